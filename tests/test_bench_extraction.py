"""Activation extraction's measure and its speed-ups, through a real API and worker on the demo kit.

The bench's floor does the job's work and no more (the job's batches, the worker's loader, the
same last block); its verdict ignores nothing; the job's overlapped writes and read-ahead keep every
token once, in order, equal to a plain forward pass.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support import Appliance, ModelSpy, demo_activations, started_demo, wait_until

LAYER = 1  # of the demo model's 4: the floor must stop after it, as the job does


@pytest.fixture(scope="module")
def app(tmp_path_factory) -> Iterator[Appliance]:
    # 1 MB of shard buffers: the extraction below spans several shards, each written while the next fills.
    yield from started_demo(tmp_path_factory, "bench-extraction", MISTUDIO_ACTIVATION_SHARD_MB="1")


@pytest.fixture(scope="module")
def extraction(app: Appliance) -> tuple[dict, dict]:
    """(job, activation set) of layer 1's residual stream over 300 demo samples, every token kept (the
    floor runs every token through the model too)."""
    return demo_activations(
        app,
        LAYER,
        hook_types=["residual"],
        batch_size=16,
        max_samples=300,
        context_length=32,
        exclude_special_tokens=False,
    )


def _stored(app: Appliance, act: dict, name: str):
    import torch
    from safetensors.torch import load_file

    folder = app.data_dir / "activations" / act["id"]
    return torch.cat(
        [
            load_file(str(folder / f"{name}_{s['index']:04d}.safetensors"))[
                "tokens" if name == "tokens" else "activations"
            ]
            for s in act["manifest"]["shards"]
        ]
    )


def test_the_floor_runs_the_jobs_batches_through_the_same_blocks_on_the_workers_loader(
    app: Appliance, extraction: tuple[dict, dict], monkeypatch: pytest.MonkeyPatch
) -> None:

    import appliance.pipeline.models.loading as models
    from appliance.commands.bench import extraction as bench

    job, act = extraction
    params = bench._params(job)
    batches = bench._batches(params, app.data_dir)
    # The same batches as the job: its stored tokens are theirs, in order.
    stored = _stored(app, act, "tokens")
    assert [t for batch in batches for ids in batch for t in ids] == stored[:, 2].tolist()

    spy = ModelSpy(monkeypatch)
    with spy.watching():
        seconds, tokens = bench._floor(params, batches)
    loads = spy.loads
    # The worker's loader, with the job's model and precision, on its default device (the GPU if any).
    assert [(a, k) for a, k, _ in loads] == [((params.model_path, params.precision), {})]
    assert next(loads[0][2].parameters()).device.type == models.device()
    # Blocks 0-1 ran for every batch; nothing after them (no later block, final norm or LM head).
    spy.assert_stopped_after(LAYER, len(batches))
    assert tokens == job["result"]["tokens"] == act["manifest"]["tokens"] and seconds > 0


def test_an_extraction_over_several_shards_keeps_every_token_once_in_order(
    app: Appliance, extraction: tuple[dict, dict]
) -> None:
    """The shards are written while the next fills and the batches are read ahead: the set must still
    be the plain forward pass's activations, token by token."""
    import torch
    from transformers import AutoModelForCausalLM

    from appliance.commands.bench import extraction as bench

    job, act = extraction
    assert len(act["manifest"]["shards"]) >= 3  # both buffer sets filled, and one reused
    batches = bench._batches(bench._params(job), app.data_dir)
    reference = AutoModelForCausalLM.from_pretrained(job["params"]["model_path"], dtype=torch.float32).eval()
    expected, rows = [], []
    sample = 0
    for batch in batches:
        for ids in batch:
            with torch.no_grad():
                hidden = reference(torch.tensor([ids]), output_hidden_states=True).hidden_states
            expected.append(hidden[LAYER + 1][0])  # hidden_states[0] is the embedding
            rows += [(sample, position, token) for position, token in enumerate(ids)]
            sample += 1
    assert _stored(app, act, "tokens").tolist() == [list(r) for r in rows]
    stored = _stored(app, act, act["manifest"]["hooks"][0]["name"])
    torch.testing.assert_close(stored.float(), torch.cat(expected), atol=2e-2, rtol=2e-2)
    assert abs(act["manifest"]["hooks"][0]["mean_norm"] - torch.cat(expected).norm(dim=-1).mean().item()) < 1e-2


def test_the_verdict_is_a_miss_when_anything_failed() -> None:
    from appliance.commands.bench.extraction import _figures

    def ratio(jobs, floors, errors=()):
        return next(f for f in _figures(jobs, floors, list(errors), "x", "fp32") if f.name == "extraction / floor")

    job = {"tokens": 1000, "tokens_per_second": 950.0, "peak_rss_mb": 500.0}
    assert ratio([job], [(1.0, 1000), (2.0, 1000)]).verdict == "PASS"  # 950 / best 1000
    assert ratio([dict(job, tokens_per_second=850.0)], [(1.0, 1000)]).verdict == "MISS"  # below 0.9
    assert ratio([job], [(1.0, 1000)], ["job j_1 failed: boom"]).verdict == "MISS"  # one round failed
    assert ratio([dict(job, tokens=999)], [(1.0, 1000)]).verdict == "MISS"  # other work than the floor
    assert ratio([], [(1.0, 1000)]).verdict == "MISS"  # no job completed


def test_prefetched_keeps_order_raises_where_the_producer_failed_and_stops_when_closed() -> None:
    from appliance.pipeline.prefetch import Prefetched

    assert list(Prefetched(iter(range(100)), depth=3)) == list(range(100))

    def failing():
        yield 1
        raise ValueError("unreadable shard")

    items = Prefetched(failing())
    assert next(items) == 1
    with pytest.raises(ValueError, match="unreadable"):
        next(items)

    produced = []

    def endless():
        for i in range(10**9):
            produced.append(i)
            yield i

    with Prefetched(endless(), depth=2) as items:
        assert [next(items) for _ in range(5)] == list(range(5))
    wait_until(lambda: not items._thread.is_alive(), timeout=10, what="the producer to stop")
    assert len(produced) <= 5 + 2 + 1  # what was taken, the queue's depth, the one being put


def test_a_failed_shard_write_is_raised_by_flush(tmp_path) -> None:
    import torch

    from appliance.pipeline.activations.extract import ShardWriter

    writer = ShardWriter(tmp_path / "gone", ["a"], shard_tokens=10, d_model=4)  # the folder does not exist
    try:
        with pytest.raises(Exception, match="No such file"):  # raised where the writer next waits: add or flush
            writer.add({"a": torch.randn(25, 4)}, torch.zeros(25, 3, dtype=torch.int64))
            writer.flush()
    finally:
        writer.close()
