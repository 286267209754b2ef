"""The feature pass's measure and its speed-up, through a real API and worker on the demo kit.

The bench's floor does the pass's work and no more (the pass's batches, the worker's loader, the same
last block, the SAE's encode); its verdict ignores nothing; and the pass, which now reads only the
latents that fire, still equals a dense computation over the same batches, across several top-k merges.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from tests.support import Appliance, ModelSpy, demo_sae, started_demo

LAYER = 1  # of the demo model's 4: the floor must stop after it, as the pass does
EVAL_SAMPLES = 60


@pytest.fixture(scope="module")
def app(tmp_path_factory) -> Iterator[Appliance]:
    yield from started_demo(tmp_path_factory, "bench-features", HF_HUB_OFFLINE="1")


@pytest.fixture(scope="module")
def job(app: Appliance) -> dict:
    """The finished feature-extraction job of a small TopK SAE on the demo model's layer 1."""
    extraction = {"eval_samples": EVAL_SAMPLES, "top_k_examples": 5}
    _, job = demo_sae(
        app, LAYER, "topk", max_samples=200, seed=1, extraction=extraction, k=8, total_steps=60, log_every=30
    )
    return job


def test_the_floor_runs_the_pass_batches_through_the_same_blocks_and_encode_on_the_workers_loader(
    app: Appliance, job: dict, monkeypatch: pytest.MonkeyPatch
) -> None:

    import appliance.pipeline.models.loading as models
    from appliance.commands.bench import features as bench
    from appliance.contracts.feature_arrays import features_dir

    spy = ModelSpy(monkeypatch)
    loads = spy.loads
    sides = bench._Sides(job, app.data_dir)
    params = sides.params
    # The worker's loader, with the job's model and precision, on its default device (the GPU if any).
    assert [(a, k) for a, k, _ in loads] == [((params.model_path, params.precision), {})]
    assert sides.device.type == models.device()
    # The job's batches: its stored tokens are theirs, in order, tokenized before any clock starts.
    stored = np.load(features_dir(app.data_dir, params.training_id) / "tokens.npy")
    assert [t for _, batch in sides.batches for ids in batch for t in ids] == stored.tolist()
    live_batches = sum(1 for _, batch in sides.batches if any(batch))

    encodes = []
    real_encode = sides.sae.encode
    sides.sae.encode = lambda x: encodes.append(x.shape[0]) or real_encode(x)
    with spy.watching():
        (pass_s, pass_tokens), (floor_s, floor_tokens) = sides.round(pass_first=False)
    # Blocks 0-1 ran for every batch of each side; nothing after them (no later block, final norm or
    # LM head); and the SAE encoded the same tokens on both sides.
    spy.assert_stopped_after(LAYER, 2 * live_batches)
    assert len(encodes) == 2 * live_batches and sum(encodes) == 2 * job["result"]["tokens"]
    assert pass_tokens == floor_tokens == job["result"]["tokens"] == len(stored)
    assert pass_s > 0 and floor_s > 0


def test_the_verdict_is_a_miss_when_anything_failed() -> None:
    from appliance.commands.bench.features import _figures
    from appliance.commands.bench.harness import EXIT_MET, EXIT_MISSED, exit_code

    summary = {
        "tokens": 1000,
        "tokens_per_second": 900.0,
        "pass_seconds": 1.1,
        "seconds": 5.0,
        "alive": 10,
        "features": 16,
        "interpretable_share": 0.5,
    }

    def figures(passes, floors, errors=(), timings=None, failures=None):
        return _figures(summary, passes, floors, list(errors), "fp32 on cpu", timings or {}, failures or {})

    def ratio(*args, **kwargs):
        return next(f for f in figures(*args, **kwargs) if f.name == "feature pass / floor")

    assert ratio([(1.4, 1000), (1.3, 1000)], [(1.0, 1000), (0.95, 1000)]).verdict == "PASS"  # 1000/1.3 over 1000/0.95
    assert ratio([(2.0, 1000)], [(1.0, 1000)]).verdict == "MISS"  # 0.5, below 0.7
    assert ratio([(1.0, 1000)], [(1.0, 1000)], ["RuntimeError: a side broke"]).verdict == "MISS"
    assert ratio([(1.0, 999)], [(1.0, 1000)]).verdict == "MISS"  # other work than the floor
    assert ratio([(1.0, 1000)], [(1.0, 1000)]).verdict == "PASS"
    assert ratio([], [(1.0, 1000)]).verdict == "MISS"  # no timed pass

    fast = {"search": [5.0] * 20}
    browse = next(f for f in figures([(1.0, 1000)], [(1.0, 1000)], timings=fast) if f.name == "browser search p95")
    assert browse.verdict == "PASS"
    failed = figures([(1.0, 1000)], [(1.0, 1000)], timings=fast, failures={"search": ["{}: HTTP 500 boom"]})
    assert next(f for f in failed if f.name == "browser search p95").verdict == "MISS"  # fast, but a page failed
    assert exit_code(failed) == EXIT_MISSED
    assert exit_code(figures([(1.0, 1000)], [(1.0, 1000)], timings=fast)) == EXIT_MET


def test_the_pass_equals_a_dense_computation_across_several_top_k_merges(
    app: Appliance, job: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every array the pass keeps, against the dense z of the same batches; an empty sample among them,
    and the running top-k merged every few samples (not once at the end)."""
    import torch

    from appliance.commands.bench import features as bench
    from appliance.contracts.feature_arrays import HIST_EDGES
    from appliance.pipeline.activations.extract import Capture
    from appliance.pipeline.features import extract as features

    monkeypatch.setattr(features, "MERGE_SAMPLES", 12)  # a merge every second batch of 8
    sides = bench._Sides(job, app.data_dir)
    batches = [(start, [list(ids) for ids in batch]) for start, batch in sides.batches]
    batches[1][1][2] = []  # sample 10 has no tokens
    k, point = sides.params.top_k_examples, sides.params.hook_point
    run = features.FeaturePass(sides.model, sides.sae, point, k)
    try:
        for start, batch in batches:
            run.add(start, batch)
        arrays = run.finish()
    finally:
        run.close()

    capture = Capture(sides.model, [point])
    try:
        z = (
            torch.cat(
                [
                    features.encode_batch(capture, sides.sae, point.name, [ids for ids in batch if ids])[0]
                    for _, batch in batches
                ]
            )
            .cpu()
            .numpy()
        )
    finally:
        capture.close()
    samples = [ids for _, batch in batches for ids in batch]
    lengths = np.array([len(ids) for ids in samples])
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    on = z > 0
    assert arrays["offsets"].tolist() == offsets.tolist()
    assert arrays["tokens"].tolist() == [t for ids in samples for t in ids]
    # The sparse copy: every firing (token, latent) once, row by row, its value in fp16.
    rows, cols = np.nonzero(on)
    assert np.diff(arrays["indptr"]).tolist() == on.sum(axis=1).tolist()
    assert arrays["indices"].tolist() == cols.tolist()
    np.testing.assert_array_equal(arrays["values"], z[rows, cols].astype(np.float16))
    # Statistics and histograms.
    np.testing.assert_array_equal(run.count.numpy(), on.sum(axis=0))
    np.testing.assert_allclose(run.sum.numpy(), z.astype(np.float64).sum(axis=0), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(run.sumsq.numpy(), (z.astype(np.float64) ** 2).sum(axis=0), rtol=1e-9, atol=1e-9)
    np.testing.assert_array_equal(run.max.numpy(), z.max(axis=0))
    mean = z.astype(np.float64).mean(axis=0)
    np.testing.assert_allclose(arrays["mean"], mean, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(arrays["std"], z.astype(np.float64).std(axis=0), rtol=1e-6, atol=1e-9)
    bins = len(HIST_EDGES) - 1
    hist = np.zeros((z.shape[1], bins), dtype=np.int64)
    for latent in range(z.shape[1]):
        fired = z[on[:, latent], latent]
        slots = np.clip(np.floor((np.log10(fired) - HIST_EDGES[0]) * 4), 0, bins - 1).astype(np.int64)
        hist[latent] = np.bincount(slots, minlength=bins)
    np.testing.assert_array_equal(run.hist.view(z.shape[1], bins).numpy(), hist)
    # Each latent's k best samples (its max in each), and where in the sample that max is.
    starts = [offsets[s] for s in range(len(samples)) if lengths[s]]
    per_sample = np.maximum.reduceat(z, starts, axis=0)  # [non-empty samples, d_sae]
    sample_ids = np.array([s for s in range(len(samples)) if lengths[s]])
    np.testing.assert_array_equal(run.samples_active.numpy(), (per_sample > 0).sum(axis=0))
    np.testing.assert_array_equal(arrays["top_values"], -np.sort(-per_sample, axis=0)[:k])
    checked = 0
    for rank, latent in zip(*np.nonzero(arrays["top_values"] > 0)):
        sample, position = arrays["top_samples"][rank, latent], arrays["top_positions"][rank, latent]
        assert sample in sample_ids and 0 <= position < lengths[sample]
        assert z[offsets[sample] + position, latent] == arrays["top_values"][rank, latent]
        column = z[offsets[sample] : offsets[sample + 1], latent]
        assert position == int(np.argmax(column))  # the first position of the sample's max
        checked += 1
    assert checked > 2 * k  # many latents fire in more than k samples: several merges chose among them
    # The k chosen samples of a latent: the k with the highest max, the earliest first among equal maxima
    # (the first token of every sample starting with the same token gives equal values).
    for latent in range(z.shape[1]):
        fired = arrays["top_values"][:, latent] > 0
        expected = sample_ids[np.argsort(-per_sample[:, latent], kind="stable")[:k]][fired]
        assert arrays["top_samples"][fired, latent].tolist() == expected.tolist(), latent
