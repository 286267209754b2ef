"""``mistudio bench extraction``: activation extraction by the worker against a floor that does the same work.

Floor: the job's own token batches, padded as the job pads them, through the model loaded by the
worker's loader (same device, precision and torch threads) and ended after the deepest hooked block
by the job's own stop hook, in this process, with nothing captured, summed or written.

The appliance registers its demo model and dataset, and the dataset is tokenized first, as the demo
pipeline does: both sides read the same stored token ids. Each round runs one extraction job in the
worker (the residual stream of every layer over ``--samples`` samples, batches of 16, context 128)
and one floor pass here, the order alternating between rounds, after one short warm-up round of
each; each side loads its model before its clock starts and is timed from its first batch to its
last; each keeps its best of ``--repeats`` rounds. The figure is the ratio of tokens per second,
target 0.9. A failed job, or one that counted other tokens than the floor, makes the ratio a MISS.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import httpx
import msgspec

from appliance.commands.bench.harness import (
    Appliance,
    BenchError,
    Figure,
    finish,
    opening,
    progress,
    wait_demo,
    wait_job,
)
from appliance.contracts.params.activations import ExtractParams
from appliance.data.layout import DataLayout

CONTEXT = 128
BATCH = 16
WARMUP_SAMPLES = 4 * BATCH
TARGET = 0.9


def _extract(client: httpx.Client, model: dict[str, Any], dataset: dict[str, Any], samples: int) -> dict[str, Any]:
    """One extraction job of every layer's residual stream, to its end; BenchError if it did not complete."""
    response = client.post(
        f"/api/models/{model['id']}/extract-activations",
        json={
            "dataset_id": dataset["id"],
            "layers": list(range(model["layers"])),
            "hook_types": ["residual"],
            "batch_size": BATCH,
            "max_samples": samples,
            "context_length": CONTEXT,
        },
    )
    if response.status_code != 202:
        raise BenchError(f"extract-activations: HTTP {response.status_code} {response.text[:300]}")
    job = wait_job(client, response.json()["data"]["job_id"])
    # Only the last set is needed; deleting keeps the disk flat over the rounds.
    client.delete(f"/api/activations/{job['target']['id']}")
    return job


def _tokenize(client: httpx.Client, dataset: dict[str, Any]) -> None:
    """Store the dataset's tokens with the demo tokenizer, as ``mistudio demo`` does before extracting."""
    response = client.post(
        f"/api/datasets/{dataset['id']}/tokenize",
        json={"tokenizer": "demo", "max_length": 256, "padding": "do_not_pad"},
    )
    if response.status_code != 202:
        raise BenchError(f"tokenize: HTTP {response.status_code} {response.text[:300]}")
    wait_job(client, response.json()["data"]["job_id"])


def _batches(params: ExtractParams, data_dir: Path) -> list[list[list[int]]]:
    """The token batches a job with ``params`` runs, read by its own code (the stored tokenization, or
    the tokenizer, cut to the context length) and skipped where it skips them."""
    from appliance.pipeline.activations.extract import token_batches

    return [batch for _, batch in token_batches(params, DataLayout(data_dir)) if any(batch)]


def _params(job: dict[str, Any], **changes: Any) -> ExtractParams:
    """The job's own parameters, as its handler received them."""
    return msgspec.structs.replace(msgspec.convert(job["params"], ExtractParams), **changes)


def _floor(params: ExtractParams, batches: list[list[list[int]]]) -> tuple[float, int]:
    """(seconds, tokens) of the floor's pass over ``batches`` (see the module's docstring)."""
    import torch

    from appliance.pipeline.activations.extract import forward_to_stop, pad, stop_after
    from appliance.pipeline.models.loading import load

    model = load(params.model_path, params.precision)
    device = next(model.parameters()).device
    handle = stop_after(model, max(p.layer for p in params.hook_points))
    try:
        padded = [pad(batch) for batch in batches]
        tokens = sum(int(mask.sum()) for _, mask in padded)
        began = time.perf_counter()
        for ids, mask in padded:
            forward_to_stop(model, ids.to(device), mask.to(device))
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - began, tokens
    finally:
        handle.remove()
        del model


def _figures(
    jobs: list[dict[str, Any]], floors: list[tuple[float, int]], errors: list[str], hooks: str, precision: str
) -> list[Figure]:
    """The report: each side's best rate and their ratio, a MISS if anything failed (``errors``, or a
    job that counted other tokens than the floor: it did other work)."""
    errors = list(errors)
    floor_tokens = floors[0][1] if floors else 0
    for result in jobs:
        # The job runs every token through the model and stores all but the special ones it leaves out.
        ran = result["tokens"] + result.get("excluded_positions", 0)
        if ran != floor_tokens:
            errors.append(f"a job ran {ran:,} tokens, the floor {floor_tokens:,}")
    for message in errors:
        print(f"error: {message}")
    job_rate = max((r["tokens_per_second"] for r in jobs), default=None)
    floor_rate = max((tokens / seconds for seconds, tokens in floors), default=None)
    ratio = job_rate / floor_rate if job_rate and floor_rate else None
    return [
        Figure(
            "extraction job",
            job_rate,
            "tokens/s",
            digits=0,
            note=f"{floor_tokens:,} tokens, {hooks}, fp16 shards; best of {len(jobs)}",
        ),
        Figure(
            "floor: same batches to the same block",
            floor_rate,
            "tokens/s",
            digits=0,
            note=f"worker's loader, {precision}, stop hook; best of {len(floors)}",
        ),
        Figure(
            "extraction / floor",
            ratio,
            "x",
            digits=2,
            target=TARGET,
            higher_is_better=True,
            errors=len(errors),
            note="ratio of best rates",
        ),
        Figure(
            "worker peak RSS during extraction", max((r["peak_rss_mb"] for r in jobs), default=None), "MB", digits=0
        ),
    ]


def run(args: argparse.Namespace) -> int:
    import torch

    samples = getattr(args, "samples", None) or 2000
    threads, repeats = opening("extraction", args)
    torch.set_num_threads(threads)
    print(
        f"torch {torch.__version__}, {threads} thread(s) on both sides, best of {repeats} alternating rounds, "
        f"{samples:,} samples, batch {BATCH}, context {CONTEXT}"
    )
    # The worker's threads: the setting, and OMP_NUM_THREADS, which torch reads at import whatever applies it.
    env = {"MISTUDIO_SEED_DEMO": "1", "MISTUDIO_TORCH_THREADS": str(threads), "OMP_NUM_THREADS": str(threads)}
    jobs: list[dict[str, Any]] = []
    floors: list[tuple[float, int]] = []
    errors: list[str] = []
    params: ExtractParams | None = None
    with Appliance(extra_env=env) as app:
        client = httpx.Client(base_url=app.url, timeout=600, headers=app.auth_headers())
        dataset, model = wait_demo(client)
        progress("tokenizing the demo dataset (stored once, read by the job and the floor)")
        _tokenize(client, dataset)
        try:  # from here on a failure is the measured job's: it makes the ratio a MISS, the run goes on
            progress(f"warm-up: a job and a floor pass over {WARMUP_SAMPLES} samples")
            warm = _extract(client, model, dataset, WARMUP_SAMPLES)
            _floor(_params(warm), _batches(_params(warm), app.data_dir))
            # The timed jobs differ from the warm-up only in their size (each job's own is checked below).
            params = _params(warm, max_samples=samples)
            batches = _batches(params, app.data_dir)
            for round_ in range(repeats):
                for side in ("floor", "job") if round_ % 2 == 0 else ("job", "floor"):
                    progress(f"round {round_ + 1} of {repeats}: {side}")
                    if side == "floor":
                        floors.append(_floor(params, batches))
                        continue
                    try:
                        job = _extract(client, model, dataset, samples)
                    except BenchError as exc:
                        errors.append(str(exc))
                        continue
                    if _params(job, activation_id=params.activation_id) != params:
                        errors.append(f"job {job['id']} ran other parameters than the floor's: {job['params']}")
                    jobs.append(job["result"])
        except Exception as exc:  # noqa: BLE001 - whatever failed, the figure is a MISS that says why
            errors.append(f"{type(exc).__name__}: {exc}")
        client.close()
    print(app.exit_summary())
    figures = _figures(
        jobs, floors, errors, f"{model['layers']} layers x residual", params.precision if params else "?"
    )
    return finish(
        "extraction",
        figures,
        settings={
            "samples": samples,
            "threads": threads,
            "repeats": repeats,
            "batch_size": BATCH,
            "context_length": CONTEXT,
        },
    )
