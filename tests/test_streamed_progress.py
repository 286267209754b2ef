"""A streamed training through the API and the worker: it reports the model's fill of the shuffle
buffer (tokens, rate, ETA) before its first step, and over one epoch runs every sample it needs
through the model exactly once: the scale is measured on the first buffer, which the first steps
then use, and the held-out samples are not run again as part of the last buffer. A resumed run takes
the scale from its checkpoint and repeats the uninterrupted run exactly."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import msgspec
import pytest

from tests.support import Appliance, demo_kit, started_demo
from tests.test_special_tokens import BOS, _ids

LAYER = 1
BUFFER = 2048  # several buffers over the run's samples
SAMPLES, CONTEXT, BATCH = 200, 64, 128


@pytest.fixture(scope="module")
def app(tmp_path_factory) -> Iterator[Appliance]:
    yield from started_demo(tmp_path_factory, "streamed", MISTUDIO_STREAM_BUFFER_TOKENS=str(BUFFER))


def _plan(app: Appliance, point: dict[str, Any]) -> Any:
    """The run's blocks as the source plans them from the tokenization (no forward pass)."""
    from appliance.contracts.params.training import HookPoint, StreamSpec
    from appliance.data.layout import DataLayout
    from appliance.demo_kit import MODEL_DIR
    from appliance.pipeline.activations.source import StreamedSource

    _, dataset = demo_kit(app)
    spec = StreamSpec(
        model_path=str(MODEL_DIR),
        precision="fp32",
        tokenizer="demo",
        dataset_id=dataset["id"],
        hook_point=msgspec.convert(point, HookPoint),
        context_length=CONTEXT,
        max_samples=SAMPLES,
        exclude_special_tokens=True,
    )
    return StreamedSource(spec, DataLayout(app.data_dir), BUFFER)


@pytest.fixture(scope="module")
def epoch(app: Appliance) -> dict[str, Any]:
    """One epoch of a streamed training (every block with a whole batch of training tokens is
    trained on once), checkpointed every 20 steps: its job, and the source's plan of blocks."""
    model, dataset = demo_kit(app)
    points = app.get(f"/api/models/{model['id']}/architecture").json()["data"]["hook_points"]
    point = next(p for p in points if p["layer"] == LAYER and p["type"] == "residual")
    source = _plan(app, point)
    assert len(source.blocks) >= 4
    starts = [sum(n for _, n in source.shards[:i]) for i in range(len(source.shards))]
    counts = [max(0, min(n, source.train_tokens - s)) // BATCH for s, (_, n) in zip(starts, source.shards)]
    assert counts[0] < 20  # the old scale measurement (20 batches) spanned buffers

    body = {
        "model_id": model["id"],
        "dataset_id": dataset["id"],
        "layer": LAYER,
        "encoder_type": "topk",
        "seed": 5,
        "max_samples": SAMPLES,
        "context_length": CONTEXT,
        "auto_save_interval": 20,
        "hyperparameters": {
            "k": 8,
            "expansion_factor": 2,
            "batch_size": BATCH,
            "total_steps": sum(counts),
            "log_every": 5,
            "normalize_activations": "expected_average_only_in",
        },
    }
    job = app.completed(app.post("/api/training/start", json=body))
    return {"job": job, "source": source, "counts": counts}


def test_streamed_training_reports_the_fill_first_and_computes_no_block_twice(
    app: Appliance, epoch: dict[str, Any]
) -> None:
    job, source, counts = epoch["job"], epoch["source"], epoch["counts"]
    # What the run needed, from the tokenizer itself: the samples of the blocks it trained on, up to
    # the first held-out position, then every held-out sample (fewer held-out tokens than it reads).
    samples = _ids(app, 0, SAMPLES, CONTEXT)
    kept = [sum(t != BOS for t in ids) for ids in samples]
    boundary = next(i for i in range(len(kept)) if sum(kept[: i + 1]) > source.train_tokens)
    trained = {i for (first, end), n in zip(source.blocks, counts) if n for i in range(first, min(end, boundary))}
    needed = sum(len(samples[i]) for i in trained) + sum(len(ids) for ids in samples[boundary:])
    assert job["result"]["tokens_forwarded"] == needed

    events = app.get(f"/api/jobs/{job['id']}/events", params={"format": "json"}).json()["data"]
    progress = [e["data"] for e in events if e["type"] == "training.progress"]
    first_step = next(i for i, p in enumerate(progress) if p.get("step") is not None)
    fills = [p for p in progress[:first_step] if (p.get("fill_tokens") or 0) > 0]
    assert fills, [p["message"] for p in progress[:first_step]]
    fill = fills[0]
    assert 0 < fill["fill_tokens"] <= fill["fill_total"] and fill["fill_tokens_per_s"] > 0 and fill["fill_eta_s"] >= 0
    assert fill["training_id"] == job["target"]["id"] and "tokens/s" in fill["message"]


def test_a_resumed_stream_takes_its_checkpoints_scale_and_repeats_the_run(app: Appliance, epoch: dict) -> None:
    tid = epoch["job"]["target"]["id"]
    metrics = _trajectory(app, tid)
    cfg = msgspec.json.decode((app.data_dir / "trainings" / tid / "export" / "cfg.json").read_bytes())
    info = msgspec.json.decode(
        (app.data_dir / "trainings" / tid / "checkpoints" / "step_00000020" / "info.json").read_bytes()
    )
    assert info["scale"][0] == cfg["metadata"]["activation_scale"]

    assert app.post(f"/api/training/{tid}/checkpoints/20/load").json()["data"]["step"] == 20
    resumed = app.post(f"/api/training/{tid}/resume").json()["data"]
    job = app.wait_status(resumed["job_id"], "completed", "failed", timeout=300)
    assert job["status"] == "completed", job["error"]
    events = app.get(f"/api/jobs/{job['id']}/events", params={"format": "json"}).json()["data"]
    messages = [e["data"].get("message") or "" for e in events]
    assert not [m for m in messages if "scale" in m], messages  # no first block run again for the scale
    assert job["result"]["tokens_forwarded"] < epoch["job"]["result"]["tokens_forwarded"]
    assert _trajectory(app, tid) == metrics  # bit for bit


def _trajectory(app: Appliance, training_id: str) -> list[tuple]:
    """What the SAE did at each logged step (not the timings)."""
    keys = ("step", "tokens", "loss", "mse", "l0", "dead_latents", "explained_variance", "learning_rate")
    return [tuple(m[k] for k in keys) for m in app.get(f"/api/training/{training_id}/metrics").json()["data"]]
