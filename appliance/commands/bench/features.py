"""``mistudio bench features``: the feature-extraction pass against a floor that does the same work,
and the feature browser's latency.

Floor: the pass's own token batches through the model loaded by the worker's loader (same device,
precision and torch threads), stopped after the SAE's block by the pass's own capture, then the SAE's
encode of those activations (``appliance.pipeline.features.extract.encode_batch``), with no statistics, top-k or
sparse copy.

The appliance trains a small TopK SAE on its demo model (activations streamed), and the worker extracts
its features over ``--samples`` samples (its pass rate is reported, not judged). Then, in this process,
the job's own pass (``appliance.pipeline.features.extract.FeaturePass``: model and SAE, per-latent statistics,
histograms, streaming top-k, the sparse CSR copy) and the floor run over the same batches, tokenized
before either clock starts: one warm-up round, then ``--repeats`` rounds; within a round the sides take
turns every 8 batches, the side that starts alternating, so that load from elsewhere falls on both
alike; each side keeps its best round. Target: pass / floor > 0.7. A side that fails or counts other
tokens than the other (or than the job) makes the ratio a MISS.

Browser: 32,768 feature rows are written for a second SAE, then searches, every sort, filters and
deep pages are timed at the client; target p95 < 50 ms. A page that does not answer 200 is counted,
not timed, and makes its row a MISS.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path
from typing import Any

import httpx

from appliance.commands.bench.harness import (
    Appliance,
    Figure,
    finish,
    machine_lines,
    percentile,
    progress,
    section,
    start_job,
    timed_get,
    train_sae,
    wait_demo,
)
from appliance.data import features, trainings
from appliance.data.database import Database
from appliance.data.layout import DataLayout
from appliance.data.statements import update

CONTEXT = 128
BROWSER_FEATURES = 32_768
TARGET = 0.7
TURN_BATCHES = 8  # batches one side runs before the other takes its turn
WORDS = "the of def class return import value error file path list string token model layer".split()
SORTS = ("frequency", "max_activation", "interpretability", "detection", "fuzzing", "index", "name")


class _Sides:
    """The model, the SAE and the token batches both sides run, loaded as the job loads them."""

    def __init__(self, job: dict[str, Any], data_dir: Path):
        import msgspec

        from appliance.contracts.params.features import ExtractParams
        from appliance.contracts.tokenization import TokenizeSettings, load_tokenizer
        from appliance.pipeline.features.extract import eval_texts, token_batches
        from appliance.pipeline.models.loading import load
        from appliance.pipeline.sae.io.saelens import load_folder

        layout = DataLayout(data_dir)
        self.params = params = msgspec.convert(job["params"], ExtractParams)
        self.model = load(params.model_path, params.precision)
        self.device = next(self.model.parameters()).device
        sae, _ = load_folder(layout.export(params.training_id))
        self.sae = sae.to(self.device)
        tokenizer = load_tokenizer(
            params.tokenizer,
            data_dir,
            TokenizeSettings(tokenizer=params.tokenizer, max_length=params.context_length, padding="do_not_pad"),
        )
        self.batches = list(
            token_batches(tokenizer, eval_texts(layout, params.dataset_id, params.eval_samples), params.batch_size)
        )

    def _synchronize(self) -> None:
        import torch

        if self.device.type == "cuda":
            torch.cuda.synchronize()

    def round(self, pass_first: bool) -> tuple[tuple[float, int], tuple[float, int]]:
        """((seconds, tokens) of the pass, (seconds, tokens) of the floor) over all the batches.

        The sides take turns every ``TURN_BATCHES`` batches, the first of each turn alternating, so
        that a machine busy with something else slows both alike. The floor runs its batches through
        the pass's own capture (the model stopped after the SAE's block) and the SAE's encode; the pass
        is timed from its construction to its finished arrays."""
        from appliance.pipeline.features.extract import FeaturePass, encode_batch

        name = self.params.hook_point.name
        pass_s = floor_s = 0.0
        floor_tokens = 0
        self._synchronize()
        began = time.perf_counter()
        run = FeaturePass(self.model, self.sae, self.params.hook_point, self.params.top_k_examples)
        pass_s += time.perf_counter() - began
        try:
            for turn, first in enumerate(range(0, len(self.batches), TURN_BATCHES)):
                turns = self.batches[first : first + TURN_BATCHES]
                for side in ("pass", "floor") if (turn % 2 == 0) == pass_first else ("floor", "pass"):
                    began = time.perf_counter()
                    if side == "pass":
                        for start, batch in turns:
                            run.add(start, batch)
                    else:
                        for _, batch in turns:
                            if live := [ids for ids in batch if ids]:
                                floor_tokens += encode_batch(run.capture, self.sae, name, live)[0].shape[0]
                    self._synchronize()
                    if side == "pass":
                        pass_s += time.perf_counter() - began
                    else:
                        floor_s += time.perf_counter() - began
            began = time.perf_counter()
            arrays = run.finish()
            self._synchronize()
            pass_s += time.perf_counter() - began
        finally:
            run.close()
        return (pass_s, len(arrays["tokens"])), (floor_s, floor_tokens)


def _pass_and_floor(sides: _Sides, repeats: int) -> tuple[list[tuple[float, int]], list[tuple[float, int]]]:
    """The timed rounds of each side, after one warm-up round; which side starts alternates."""
    sides.round(pass_first=True)
    passes, floors = [], []
    for round_ in range(repeats):
        progress(f"round {round_ + 1} of {repeats}")
        timed_pass, timed_floor = sides.round(pass_first=round_ % 2 == 1)
        passes.append(timed_pass)
        floors.append(timed_floor)
    return passes, floors


def _interval(rng: random.Random, share: float) -> tuple[float | None, float | None, float | None]:
    """A score and its interval for ``share`` of the features, else three NULLs (unscored)."""
    if rng.random() >= share:
        return None, None, None
    score = rng.random()
    return score, max(0.0, score - rng.random() * 0.3), min(1.0, score + rng.random() * 0.3)


def _scores(rng: random.Random) -> tuple[Any, ...]:
    """A synthetic feature's score with its interval and support (most features scored, as on the demo SAE),
    then its judges' scores (a few explained): what the score sorts read."""
    return (*_interval(rng, 0.85), rng.randint(0, 300), *_interval(rng, 0.03), *_interval(rng, 0.03))


def _fill_browser(app: Appliance, training_id: str, model_id: str) -> None:
    """A finished SAE of ``BROWSER_FEATURES`` synthetic features, written straight to the database."""
    rng = random.Random(0)
    now = time.time()
    rows, details = [], []
    for i in range(BROWSER_FEATURES):
        top = rng.sample(WORDS, 3)
        label = "fires on " + ", ".join(repr(t) for t in top)
        example = json.dumps(
            {"tokens": rng.choices(WORDS, k=9), "activations": [rng.random() for _ in range(9)], "max_index": 4}
        )
        rows.append(
            (
                training_id,
                i,
                rng.random() ** 3,
                rng.random() * 10,
                rng.random(),
                rng.randint(0, 500),
                label,
                *_scores(rng),
                " ".join([label, *top]).lower(),
                int(rng.random() < 0.01),
            )
        )
        details.append((training_id, i, "[]", json.dumps([[t, 3] for t in top]), "{}", example))
    db = Database(DataLayout(app.data_dir).db)
    try:
        with db.transaction() as conn:
            conn.execute(
                *trainings.insert(
                    training_id,
                    model_id=model_id,
                    dataset_id="",
                    activation_id=None,
                    layer=0,
                    hook_type="residual",
                    encoder_type="topk",
                    config={},
                    total_steps=0,
                    now=now,
                )
            )
            conn.execute(*update("trainings", training_id, {"status": "completed"}, now=now))
            conn.execute(
                *features.insert_ready_extraction(
                    training_id, json.dumps({"tokenizer": "demo", "context_length": CONTEXT}), "{}", now
                )
            )
            conn.executemany(*features.insert_browsable(rows))
            conn.executemany(*features.insert_details(details))
    finally:
        db.close()


def _token_problem(
    summary: dict[str, Any], passes: list[tuple[float, int]], floors: list[tuple[float, int]]
) -> str | None:
    """Why the sides did not do the same work, if they counted other tokens than the job; else None."""
    counted = {tokens for _, tokens in passes} | {tokens for _, tokens in floors}
    if counted - {summary["tokens"]}:
        return (
            f"tokens counted: job {summary['tokens']:,}, pass {sorted({t for _, t in passes})}, "
            f"floor {sorted({t for _, t in floors})}"
        )
    return None


def _figures(
    summary: dict[str, Any],
    passes: list[tuple[float, int]],
    floors: list[tuple[float, int]],
    errors: list[str],
    loaded: str,
    timings: dict[str, list[float]],
    failures: dict[str, list[str]],
) -> list[Figure]:
    """The figures of a run. The ratio is a MISS below the target, with no timed round on a side, when
    a side failed (``errors``) or counted other tokens; a browser row is a MISS when a page failed."""
    return [*_pass_figures(summary, passes, floors, errors, loaded), *_browser_figures(timings, failures)]


def _pass_figures(
    summary: dict[str, Any],
    passes: list[tuple[float, int]],
    floors: list[tuple[float, int]],
    errors: list[str],
    loaded: str,
) -> list[Figure]:
    problems = len(errors) + bool(_token_problem(summary, passes, floors))
    pass_rate = max((tokens / seconds for seconds, tokens in passes), default=None)
    floor_rate = max((tokens / seconds for seconds, tokens in floors), default=None)
    ratio = pass_rate / floor_rate if pass_rate and floor_rate else None
    return [
        Figure(
            "feature pass",
            pass_rate,
            "tok/s",
            digits=0,
            note=f"{summary['tokens']:,} tokens; model + SAE, statistics, top-k, sparse CSR; best of {len(passes)}",
        ),
        Figure(
            "floor: same batches to the same block + encode",
            floor_rate,
            "tok/s",
            digits=0,
            note=f"worker's loader ({loaded}), the pass's capture; best of {len(floors)}",
        ),
        Figure(
            "feature pass / floor",
            ratio,
            "x",
            digits=2,
            target=TARGET,
            higher_is_better=True,
            errors=problems,
            note="ratio of best rates, same process, sides taking turns",
        ),
        Figure(
            "worker job: pass",
            summary["tokens_per_second"],
            "tok/s",
            digits=0,
            note=f"in {summary['pass_seconds']} s, tokenization excluded; whole job {summary['seconds']} s",
        ),
        Figure(
            "features found",
            summary["alive"],
            "",
            digits=0,
            note=(
                f"of {summary['features']:,}; {summary.get('scored', 0):,} scored (the rest too rare to score),"
                f" {100 * summary['interpretable_share']:.1f}% of those interpretable"
            ),
        ),
    ]


def _browser_figures(timings: dict[str, list[float]], failures: dict[str, list[str]]) -> list[Figure]:
    return [
        Figure(
            f"browser {kind} p95",
            percentile(values, 95),
            "ms",
            target=50,
            errors=len(failures.get(kind, ())),
            note=f"p50 {percentile(values, 50):.1f} ms; {BROWSER_FEATURES:,} features",
        )
        for kind, values in timings.items()
    ]


def _print_header(torch_version: str, threads: int, repeats: int, samples: int) -> None:
    print(section("mistudio bench features"))
    for line in machine_lines():
        print(line)
    print(
        f"torch {torch_version}, {threads} thread(s) on both sides, best of {repeats} rounds (sides taking "
        f"turns every {TURN_BATCHES} batches), {samples:,} samples, context {CONTEXT}"
    )


def _extraction(
    app: Appliance, client: httpx.Client, dataset: dict[str, Any], model: dict[str, Any], samples: int, repeats: int
) -> tuple[dict[str, Any], str, list[tuple[float, int]], list[tuple[float, int]], list[str]]:
    """Train an SAE, extract its features in the worker, then time the job's pass against the floor here:
    the job's summary, how the model was loaded, the timed rounds of each side, and why a side failed."""
    progress("training a TopK SAE (8x, k=16) on layer 2, activations streamed")
    training_id = train_sae(
        client,
        model,
        dataset,
        "topk",
        {"k": 16, "expansion_factor": 8, "batch_size": 1024, "total_steps": 300},
        max_samples=1000,
        context_length=CONTEXT,
    )
    progress(f"extracting features over {samples:,} samples in the worker")
    job = start_job(
        client,
        "/api/features/extract",
        {"training_id": training_id, "eval_samples": samples, "top_k_examples": 20, "context_length": CONTEXT},
    )
    summary = job["result"]
    progress("the job's pass and the floor over the same batches, in this process")
    loaded = f"{job['params']['precision']}"
    errors: list[str] = []
    passes: list[tuple[float, int]] = []
    floors: list[tuple[float, int]] = []
    try:
        sides = _Sides(job, app.data_dir)
        loaded += f" on {sides.device.type}"
        passes, floors = _pass_and_floor(sides, repeats)
        del sides
    except Exception as exc:  # noqa: BLE001 - a side that breaks makes the ratio a MISS, with its reason
        errors.append(f"{type(exc).__name__}: {exc}")
    return summary, loaded, passes, floors, errors


def _browser(
    app: Appliance, client: httpx.Client, model_id: str
) -> tuple[dict[str, list[float]], dict[str, list[str]]]:
    """Write the browser's feature rows, then time its pages: the latencies (ms) and the failures, by kind."""
    progress(f"writing {BROWSER_FEATURES:,} feature rows for the browser")
    browse_id = "tr_benchbrowse"
    _fill_browser(app, browse_id, model_id)
    base = f"/api/training/{browse_id}/features"
    queries = {
        "search": [{"search": w} for w in WORDS] + [{"search": "fires on 'def'"}, {"search": "#1234"}],
        "sort": [{"sort_by": s, "order": o} for s in SORTS for o in ("asc", "desc")],
        "filter": [
            {"favorites_only": "true"},
            {"min_frequency": "0.1"},
            {"min_frequency": "0.01", "max_frequency": "0.2", "sort_by": "interpretability"},
        ],
        "deep page": [{"page": str(p), "limit": "50"} for p in (10, 100, 300, 600)],
    }
    timings: dict[str, list[float]] = {}
    failures: dict[str, list[str]] = {}
    for kind, params_list in queries.items():
        timings[kind], failures[kind] = [], []
        for _ in range(5):
            for params in params_list:
                timed_get(client, base, {"limit": "50", **params}, timings[kind], failures[kind])
    return timings, failures


def run(args: argparse.Namespace) -> int:
    import torch

    from appliance.jobs import torch_threads

    samples = getattr(args, "samples", None) or 1000
    threads = int(getattr(args, "threads", 1) or 1)
    repeats = max(1, int(getattr(args, "repeats", 3) or 3))
    torch_threads.apply(threads)  # as the worker sizes torch's pools for its jobs
    _print_header(torch.__version__, threads, repeats, samples)
    # The worker's threads: the setting, and OMP_NUM_THREADS, which torch reads at import whatever applies it.
    env = {"MISTUDIO_SEED_DEMO": "1", "MISTUDIO_TORCH_THREADS": str(threads), "OMP_NUM_THREADS": str(threads)}
    with Appliance(extra_env=env) as app:
        client = httpx.Client(base_url=app.url, timeout=600, headers=app.auth_headers())
        dataset, model = wait_demo(client)
        summary, loaded, passes, floors, errors = _extraction(app, client, dataset, model, samples, repeats)
        timings, failures = _browser(app, client, model["id"])
        client.close()
    print(app.exit_summary())
    for kind, problems in failures.items():
        if problems:
            print(f"error: browser {kind}: {len(problems)} failed, first: {problems[0]}")

    problem = _token_problem(summary, passes, floors)
    for message in errors + ([problem] if problem else []):
        print(f"error: {message}")
    figures = _figures(summary, passes, floors, errors, loaded, timings, failures)
    return finish(
        "features",
        figures,
        settings={"samples": samples, "threads": threads, "repeats": repeats, "context_length": CONTEXT},
    )
