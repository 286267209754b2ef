"""``mistudio bench features``: feature extraction speed, and the feature browser's latency.

Extraction: the appliance trains a small TopK SAE on its demo model (activations streamed), then the
worker extracts its features over ``--samples`` samples. Its pass over the text (model to the hooked
layer, SAE encode, per-latent statistics, streaming top-k, the sparse copy) is compared with a bare
forward pass of the whole model plus the SAE's encode over the same batches in this process.

Browser: 32,768 feature rows are written for a second SAE, then searches, every sort, filters and
deep pages are timed at the client; target p95 < 50 ms.
"""

from __future__ import annotations

import argparse
import json
import random
import sqlite3
import time

import httpx

from appliance.bench.harness import (Appliance, BenchError, Figure, figures_table, machine_lines, percentile,
                                     progress, section, start_job, train_sae, wait_demo)

CONTEXT = 128
BATCH = 8
BROWSER_FEATURES = 32_768
WORDS = "the of def class return import value error file path list string token model layer".split()


def _bare(model_path: str, sae_folder, texts: list[str]) -> tuple[float, int]:
    import torch
    from tokenizers import Tokenizer
    from transformers import AutoModelForCausalLM

    from appliance.demo import TOKENIZER_FILE
    from appliance.ml.sae.saelens import load_folder

    tokenizer = Tokenizer.from_file(str(TOKENIZER_FILE))
    tokenizer.enable_truncation(CONTEXT)
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32).eval()
    sae, _ = load_folder(sae_folder)
    batches = []
    for start in range(0, len(texts), BATCH):
        encodings = [e for e in tokenizer.encode_batch(texts[start:start + BATCH]) if e.ids]
        if not encodings:
            continue
        width = max(len(e.ids) for e in encodings)
        ids = torch.zeros((len(encodings), width), dtype=torch.long)
        mask = torch.zeros_like(ids)
        for row, e in enumerate(encodings):
            ids[row, :len(e.ids)] = torch.tensor(e.ids)
            mask[row, :len(e.ids)] = 1
        batches.append((ids, mask))
    tokens = sum(int(mask.sum()) for _, mask in batches)
    with torch.inference_mode():
        began = time.perf_counter()
        for ids, mask in batches:
            hidden = model(input_ids=ids, attention_mask=mask, use_cache=False, output_hidden_states=True).hidden_states
            sae.encode(hidden[3][mask.bool()])  # layer 2's output
        return time.perf_counter() - began, tokens


def _fill_browser(app: Appliance, training_id: str, model_id: str) -> None:
    rng = random.Random(0)
    conn = sqlite3.connect(app.data_dir / "mistudio.db")
    now = time.time()
    conn.execute("INSERT INTO trainings (id, model_id, dataset_id, layer, hook_type, encoder_type, config, status,"
                 " total_steps, created_at, updated_at) VALUES (?, ?, '', 0, 'residual', 'topk', '{}', 'completed',"
                 " 0, ?, ?)", (training_id, model_id, now, now))
    conn.execute("INSERT INTO feature_extractions (training_id, status, config, summary, created_at, updated_at)"
                 " VALUES (?, 'ready', '{\"tokenizer\": \"demo\", \"context_length\": 128}', '{}', ?, ?)",
                 (training_id, now, now))
    rows, details = [], []
    for i in range(BROWSER_FEATURES):
        top = rng.sample(WORDS, 3)
        label = "fires on " + ", ".join(repr(t) for t in top)
        example = json.dumps({"tokens": rng.choices(WORDS, k=9), "activations": [rng.random() for _ in range(9)],
                              "max_index": 4})
        rows.append((training_id, i, rng.random() ** 3, rng.random() * 10, rng.random(), rng.randint(0, 500), label,
                     rng.random(), " ".join([label, *top]).lower(), int(rng.random() < 0.01)))
        details.append((training_id, i, "[]", json.dumps([[t, 3] for t in top]), "{}", example))
    conn.executemany("INSERT INTO features (training_id, idx, frequency, max_activation, mean_activation,"
                     " active_samples, auto_label, score, search_text, is_favorite) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                     rows)
    conn.executemany("INSERT INTO feature_details (training_id, idx, histogram, top_tokens, logit_lens, example)"
                     " VALUES (?, ?, ?, ?, ?, ?)", details)
    conn.commit()
    conn.close()


def run(args: argparse.Namespace) -> int:
    samples = getattr(args, "samples", None) or 1000
    print(section("mistudio bench features"))
    for line in machine_lines():
        print(line)
    with Appliance(extra_env={"MISTUDIO_SEED_DEMO": "1"}) as app:
        client = httpx.Client(base_url=app.url, timeout=600, headers=app.auth_headers())
        dataset, model = wait_demo(client)
        progress("training a TopK SAE (8x, k=16) on layer 2, activations streamed")
        training_id = train_sae(client, model, dataset, "topk",
                                {"k": 16, "expansion_factor": 8, "batch_size": 1024, "total_steps": 300},
                                max_samples=1000, context_length=CONTEXT)
        progress(f"extracting features over {samples:,} samples")
        job = start_job(client, "/api/features/extract", {
            "training_id": training_id, "eval_samples": samples, "top_k_examples": 20, "context_length": CONTEXT})
        summary = job["result"]
        progress("bare forward + SAE encode of the same batches")
        from datasets import load_from_disk

        texts = [t or "" for t in load_from_disk(str(app.data_dir / "datasets" / dataset["id"] / "arrow"))[:samples]["text"]]
        from appliance.demo import MODEL_DIR

        export = app.data_dir / "trainings" / training_id / "export"
        bare_seconds, bare_tokens = min((_bare(str(MODEL_DIR), export, texts) for _ in range(2)), key=lambda r: r[0])
        bare_rate = bare_tokens / bare_seconds

        progress(f"writing {BROWSER_FEATURES:,} feature rows for the browser")
        browse_id = "tr_benchbrowse"
        _fill_browser(app, browse_id, model["id"])
        base = f"/api/training/{browse_id}/features"
        queries = {
            "search": [{"search": w} for w in WORDS] + [{"search": "fires on 'def'"}, {"search": "#1234"}],
            "sort": [{"sort_by": s, "order": o} for s in ("frequency", "max_activation", "interpretability", "index", "name")
                     for o in ("asc", "desc")],
            "filter": [{"favorites_only": "true"}, {"min_frequency": "0.1"}, {"min_frequency": "0.01", "max_frequency": "0.2",
                                                                             "sort_by": "interpretability"}],
            "deep page": [{"page": str(p), "limit": "50"} for p in (10, 100, 300, 600)],
        }
        timings: dict[str, list[float]] = {}
        for kind, params_list in queries.items():
            for _ in range(5):
                for params in params_list:
                    began = time.perf_counter()
                    response = client.get(base, params={"limit": "50", **params})
                    timings.setdefault(kind, []).append((time.perf_counter() - began) * 1000)
                    if response.status_code != 200:
                        raise BenchError(f"{base} {params}: {response.status_code} {response.text[:200]}")
        print(app.exit_summary())
    ratio = summary["tokens_per_second"] / bare_rate
    figures = [
        Figure("extraction pass", summary["tokens_per_second"], "tok/s", digits=0,
               note=f"{summary['tokens']:,} tokens in {summary['pass_seconds']} s; whole job {summary['seconds']} s"),
        Figure("bare forward + encode", bare_rate, "tok/s", digits=0, note="full model (LM head too), no hooks"),
        Figure("extraction / bare", ratio, "x", digits=2, target=0.7, higher_is_better=True),
        Figure("features found", summary["alive"], "", digits=0,
               note=f"of {summary['features']:,}; interpretable {100 * summary['interpretable_share']:.1f}%"),
    ]
    for kind, values in timings.items():
        figures.append(Figure(f"browser {kind} p95", percentile(values, 95), "ms", target=50,
                              note=f"p50 {percentile(values, 50):.1f} ms; {BROWSER_FEATURES:,} features"))
    print(figures_table(figures))
    return 1 if any(f.verdict == "MISS" for f in figures) else 0
