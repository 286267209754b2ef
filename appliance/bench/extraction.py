"""``mistudio bench extraction``: activation extraction by the worker against a bare forward pass.

The appliance registers its demo model and dataset; the worker extracts the residual stream of every
layer over ``--samples`` samples. The baseline runs the same model over the same batches (same
tokenizer, context and padding) in this process with no hooks and no writing, and the ratio of
tokens per second is the figure. Extraction stops after the deepest hooked layer, so it skips the
vocabulary projection the bare pass computes; the ratio can exceed 1 for that reason.
"""

from __future__ import annotations

import argparse
import time

import httpx

from appliance.bench.harness import (Appliance, BenchError, Figure, figures_table, machine_lines, progress,
                                     section, wait_demo, wait_job)

CONTEXT = 128
BATCH = 16


def _bare_forward(model_path: str, texts: list[str]) -> tuple[float, int]:
    import torch
    from tokenizers import Tokenizer
    from transformers import AutoModelForCausalLM

    from appliance.demo import TOKENIZER_FILE

    tokenizer = Tokenizer.from_file(str(TOKENIZER_FILE))
    tokenizer.enable_truncation(CONTEXT)
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32).eval()
    batches = []
    for start in range(0, len(texts), BATCH):
        encodings = tokenizer.encode_batch(texts[start:start + BATCH])
        width = max(len(e.ids) for e in encodings)
        ids = torch.zeros((len(encodings), width), dtype=torch.long)
        mask = torch.zeros_like(ids)
        for row, e in enumerate(encodings):
            ids[row, :len(e.ids)] = torch.tensor(e.ids)
            mask[row, :len(e.ids)] = 1
        batches.append((ids, mask))
    tokens = sum(int(mask.sum()) for _, mask in batches)
    with torch.inference_mode():
        model(input_ids=batches[0][0], attention_mask=batches[0][1])  # warm-up
        began = time.perf_counter()
        for ids, mask in batches:
            model(input_ids=ids, attention_mask=mask, use_cache=False)
        return time.perf_counter() - began, tokens


def run(args: argparse.Namespace) -> int:
    samples = getattr(args, "samples", None) or 2000
    print(section("mistudio bench extraction"))
    for line in machine_lines():
        print(line)
    with Appliance(extra_env={"MISTUDIO_SEED_DEMO": "1"}) as app:
        client = httpx.Client(base_url=app.url, timeout=600, headers=app.auth_headers())
        dataset, model = wait_demo(client)
        layers = list(range(model["layers"]))
        progress(f"extracting the residual stream of layers {layers} over {samples:,} samples")
        response = client.post(f"/api/models/{model['id']}/extract-activations", json={
            "dataset_id": dataset["id"], "layers": layers, "hook_types": ["residual"], "batch_size": BATCH,
            "max_samples": samples, "context_length": CONTEXT})
        if response.status_code != 202:
            raise BenchError(response.text)
        job = wait_job(client, response.json()["data"]["job_id"])
        result = job["result"]
        texts = [s["text"] for page in range(1, samples // 200 + 2)
                 for s in client.get(f"/api/datasets/{dataset['id']}/samples",
                                     params={"page": page, "limit": 200}).json()["data"]][:samples]
        client.close()
        from appliance.demo import MODEL_DIR

        progress("bare forward pass of the same batches in this process")
        bare_s, bare_tokens = _bare_forward(str(MODEL_DIR), texts)
    bare_rate = bare_tokens / bare_s
    figures = [
        Figure("extraction", result["tokens_per_second"], "tokens/s", digits=0,
               note=f"{result['tokens']:,} tokens, {len(layers)} layers x residual, fp16 shards"),
        Figure("bare forward pass", bare_rate, "tokens/s", digits=0, note=f"{bare_tokens:,} tokens, same batches"),
        Figure("extraction / bare forward", result["tokens_per_second"] / bare_rate, "x", digits=2, target=0.85,
               higher_is_better=True, note="ratio of rates"),
        Figure("worker peak RSS during extraction", result["peak_rss_mb"], "MB", digits=0),
    ]
    print(section("Figures"))
    print(figures_table(figures))
    return 0
