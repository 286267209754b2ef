"""Feature discovery on a demo-model SAE, every number checked against a direct computation with
the model and the exported SAE in this process: top-k activations, frequencies, logit lens,
correlations, ablation and the heatmap; then browsing, names and the map (explanations by a language
model: tests/test_explanations.py)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import torch

from appliance.contracts.token_text import token_text
from tests.support import Appliance, demo_kit, demo_sae, started_demo
from tests.test_api_contract import assert_error

LAYER = 2
EVAL_SAMPLES = 120


@pytest.fixture(scope="module")
def app(tmp_path_factory) -> Iterator[Appliance]:
    yield from started_demo(tmp_path_factory, "features", HF_HUB_OFFLINE="1")


@pytest.fixture(scope="module")
def sae(app: Appliance) -> dict:
    """A TopK SAE trained on the demo model's layer 2, its features extracted with every token counted
    (the direct computation below counts them all; tests/test_special_tokens.py covers leaving some out)."""
    extraction = {"eval_samples": EVAL_SAMPLES, "top_k_examples": 10, "exclude_special_tokens": False}
    trained, job = demo_sae(
        app, LAYER, "topk", max_samples=400, seed=1, extraction=extraction, k=8, total_steps=200, log_every=50
    )
    model, dataset = demo_kit(app)
    return {"training_id": trained["target"]["id"], "model": model, "dataset": dataset, "job": job}


@pytest.fixture(scope="module")
def direct(app: Appliance, sae: dict) -> dict:
    """The same evaluation samples through the model and the exported SAE, densely, in this process."""
    from datasets import load_from_disk

    from appliance.contracts.tokenization import TokenizeSettings, load_tokenizer
    from appliance.demo_kit import MODEL_DIR
    from appliance.pipeline.activations.extract import Capture
    from appliance.pipeline.models.architecture import hook_points
    from appliance.pipeline.models.loading import load
    from appliance.pipeline.sae.io.saelens import load_folder

    model = load(str(MODEL_DIR), sae["model"]["precision"], on="cpu")
    point = next(p for p in hook_points(model) if p["layer"] == LAYER and p["type"] == "residual")
    encoder, _ = load_folder(app.data_dir / "trainings" / sae["training_id"] / "export")
    tokenizer = load_tokenizer(
        "demo", app.data_dir, TokenizeSettings(tokenizer="demo", max_length=64, padding="do_not_pad")
    )
    texts = load_from_disk(str(app.data_dir / "datasets" / sae["dataset"]["id"] / "arrow"))[:EVAL_SAMPLES]["text"]
    ids = [e.ids for e in tokenizer.encode_batch([t or "" for t in texts])]
    capture = Capture(model, [point])
    z = []
    with torch.no_grad():
        for one in ids:
            if one:
                z.append(encoder.encode(capture([one])[0][point["name"]].float()))
    capture.close()
    return {
        "model": model,
        "point": point,
        "sae": encoder,
        "tokenizer": tokenizer,
        "ids": ids,
        "z": torch.cat(z).numpy(),
    }


def _feature(app: Appliance, sae: dict, index: int, **params) -> dict:
    response = app.get(f"/api/training/{sae['training_id']}/features/{index}", params=params)
    assert response.status_code == 200, response.text
    return response.json()["data"]


def _live(app: Appliance, sae: dict, limit: int = 500) -> list[dict]:
    return app.get(
        f"/api/training/{sae['training_id']}/features", params={"limit": limit, "sort_by": "frequency"}
    ).json()["data"]


def test_statistics_and_examples_equal_a_direct_computation(app: Appliance, sae: dict, direct: dict) -> None:
    z = direct["z"]
    summary = app.get(f"/api/training/{sae['training_id']}/features/summary").json()["data"]
    assert summary["status"] == "ready" and summary["summary"]["tokens"] == z.shape[0]
    assert summary["summary"]["features"] == z.shape[1]
    assert summary["summary"]["alive"] == int((z > 0).any(axis=0).sum())
    rows = [
        row
        for page in (1, 2)
        for row in app.get(
            f"/api/training/{sae['training_id']}/features",
            params={"limit": 500, "page": page, "include_dead": True, "sort_by": "index", "order": "asc"},
        ).json()["data"]
    ]
    assert [r["index"] for r in rows] == list(range(z.shape[1]))
    np.testing.assert_allclose([r["frequency"] for r in rows], (z > 0).mean(axis=0), atol=1e-9)
    np.testing.assert_allclose([r["max_activation"] for r in rows], z.max(axis=0), rtol=1e-4, atol=1e-5)

    offsets = np.concatenate([[0], np.cumsum([len(i) for i in direct["ids"] if i])])
    sample_rows = [s for s, one in enumerate(direct["ids"]) if one]
    for feature in [r["index"] for r in _live(app, sae)[:5]]:
        detail = _feature(app, sae, feature, examples=10, window=4)
        column = z[:, feature]
        best_per_sample = sorted(
            (column[offsets[i] : offsets[i + 1]].max() for i in range(len(sample_rows))), reverse=True
        )
        found = [e["max_activation"] for e in detail["examples"]]
        np.testing.assert_allclose(found, best_per_sample[: len(found)], rtol=1e-4, atol=1e-4)
        for example in detail["examples"]:
            row = offsets[sample_rows.index(example["sample"])] + example["position"]
            assert column[row] == pytest.approx(example["max_activation"], rel=1e-4, abs=1e-4)
            # Per-token values in the window are the stored fp16 activations of that latent.
            start = row - example["max_index"]
            np.testing.assert_allclose(
                example["activations"], column[start : start + len(example["activations"])], rtol=2e-3, atol=2e-3
            )
            assert example["token_ids"][example["max_index"]] == direct["ids"][example["sample"]][example["position"]]
            assert len(example["tokens"]) == len(example["token_ids"])
        # Examples across the activation range: real firing tokens, strongest quantile first.
        spread = detail["quantile_examples"]
        assert spread and all(e["activation"] > 0 for e in spread)
        assert [e["activation"] for e in spread] == sorted((e["activation"] for e in spread), reverse=True)
        for example in spread:
            row = offsets[sample_rows.index(example["sample"])] + example["position"]
            assert column[row] == pytest.approx(example["activation"], rel=2e-3, abs=2e-3)


def test_logit_lens_correlations_ablation_and_heatmap_equal_direct_computations(
    app: Appliance, sae: dict, direct: dict
) -> None:
    import torch.nn.functional as F

    feature = _live(app, sae)[0]["index"]
    encoder, model, z = direct["sae"], direct["model"], direct["z"]

    lens = app.get(f"/api/training/{sae['training_id']}/features/{feature}/logit-lens").json()["data"]
    logits = encoder.W_dec[feature].detach() @ model.get_output_embeddings().weight.detach().float().T
    top = logits.topk(10).indices.tolist()
    # As text a token reads as decoded, or as byte escapes where it is only part of a character (never U+FFFD).
    assert [token_text(direct["tokenizer"], t) for t in top] == [p[0] for p in lens["positive"]]
    assert lens["vocab_size"] == model.get_output_embeddings().weight.shape[0]  # what the softmax ran over
    assert lens["positive"][0][1] == pytest.approx(float(logits.max()), rel=1e-4)
    assert lens["negative"][0][1] == pytest.approx(float(logits.min()), rel=1e-4)

    correlations = app.get(
        f"/api/training/{sae['training_id']}/features/{feature}/correlations", params={"top": 5}
    ).json()["data"]
    with np.errstate(invalid="ignore", divide="ignore"):
        dense = np.nan_to_num(np.corrcoef(z.T)[feature])
    dense[feature] = 0
    assert [c["index"] for c in correlations] == [int(j) for j in np.argsort(-np.abs(dense))[:5]]
    for c in correlations:
        assert c["correlation"] == pytest.approx(dense[c["index"]], abs=5e-3)
        assert c["label"]

    text = "def read(self, path):\n    return open(path).read()"
    heat = app.post(f"/api/training/{sae['training_id']}/features/{feature}/activations-on", json={"text": text})
    assert heat.status_code == 200, heat.text
    heat = heat.json()["data"]
    ids = direct["tokenizer"].encode(text).ids
    from appliance.pipeline.activations.extract import Capture

    capture = Capture(model, [direct["point"]])
    with torch.no_grad():
        expected = encoder.encode(capture([ids])[0][direct["point"]["name"]].float())[:, feature]
    capture.close()
    assert heat["token_ids"] == ids and "".join(heat["tokens"]) == "<|endoftext|>" + text  # the BOS, then the text
    np.testing.assert_allclose(heat["activations"], expected.numpy(), rtol=1e-3, atol=1e-4)

    ablation = app.post(f"/api/training/{sae['training_id']}/features/{feature}/ablation", params={"contexts": 3})
    assert ablation.status_code == 200, ablation.text
    ablation = ablation.json()["data"]
    detail = _feature(app, sae, feature, examples=3)
    module = dict(model.named_modules())[direct["point"]["module"]]
    direction = encoder.W_dec[feature].detach()

    def zero_feature(_m, _i, out):
        hidden = out[0] if isinstance(out, tuple) else out
        with torch.no_grad():
            value = encoder.encode(hidden.reshape(-1, hidden.shape[-1]).float())[:, feature]
        changed = hidden - value.reshape(*hidden.shape[:-1], 1) * direction
        return (changed, *out[1:]) if isinstance(out, tuple) else changed

    ce = {"original": 0.0, "ablated": 0.0}
    tokens = 0
    for example in detail["examples"]:
        batch = torch.tensor([direct["ids"][example["sample"]]])
        with torch.no_grad():
            ce["original"] += F.cross_entropy(model(batch).logits[0, :-1], batch[0, 1:], reduction="sum").item()
            handle = module.register_forward_hook(zero_feature)
            ce["ablated"] += F.cross_entropy(model(batch).logits[0, :-1], batch[0, 1:], reduction="sum").item()
            handle.remove()
        tokens += batch.shape[1] - 1
    assert ablation["tokens"] == tokens
    assert ablation["perplexity_original"] == pytest.approx(np.exp(ce["original"] / tokens), rel=1e-4)
    assert ablation["perplexity_ablated"] == pytest.approx(np.exp(ce["ablated"] / tokens), rel=1e-4)
    assert 0 < ablation["impact_score"] <= 1 and ablation["fired_tokens"] > 0
    assert _feature(app, sae, feature)["ablation"]["perplexity_delta"] == ablation["perplexity_delta"]


MIN_ACTIVE_SAMPLES, MIN_HELD_OUT_POSITIVES = 10, 5  # the support a score needs, as the README documents it


def _reference_scores(
    z: np.ndarray, ids: list[list[int]], tops: dict[int, list[tuple[int, int]]], top_k: int
) -> dict[str, np.ndarray]:
    """The interpretability score as the README defines it, with its support, from the directly computed
    activations.

    Per latent, its top samples (the ``top_k`` with the highest max; ``tops``: the (sample, position)
    of each, as the API lists them, checked here to be a top-k of the direct activations: samples
    tied at the cut, e.g. duplicate texts, may be resolved either way) give its top tokens: the 5
    most frequent tokens at those maxima, from the samples that are not held out, ties in the order
    of the samples' maxima. On the held-out samples (every fifth: index % 5 == 4), "the token is a
    top token" predicts "the activation is above 10% of the latent's max", compared as stored
    (fp16), and the score is that F1 (0 with no positives and no predictions). Its support: the
    samples where the latent fires (``active``) and the held-out positions above 10% of its max
    (``positives``); ``counts`` [latent, held-out sample, (true positives, positives, predictions)]
    is what a bootstrap over held-out samples resamples."""
    from collections import Counter

    lengths = [len(one) for one in ids]
    sample_of = np.repeat(np.arange(len(ids)), lengths)
    tokens = np.concatenate([np.asarray(one) for one in ids if one])
    start_of = dict(
        zip((s for s, one in enumerate(ids) if one), np.cumsum([0, *(n for n in lengths if n)])[:-1], strict=True)
    )
    held = sample_of % 5 == 4
    held_samples = sorted(s for s in start_of if s % 5 == 4)
    found = {
        "score": np.zeros(z.shape[1]),
        "active": np.zeros(z.shape[1], dtype=int),
        "positives": np.zeros(z.shape[1], dtype=int),
        "counts": np.zeros((z.shape[1], len(held_samples), 3)),
    }
    for latent in np.nonzero((z > 0).any(axis=0))[0]:
        column = z[:, latent]
        maxima = {s: float(column[a : a + lengths[s]].max()) for s, a in start_of.items()}
        chosen = tops[int(latent)]
        values = [maxima[s] for s, _ in chosen]
        tol = 1e-4 + 1e-3 * max(values)
        assert len(chosen) == min(top_k, sum(v > 0 for v in maxima.values())), (latent, chosen)
        assert all(abs(column[start_of[s] + p] - maxima[s]) <= tol for s, p in chosen), (latent, chosen)
        assert all(a >= b - tol for a, b in zip(values, values[1:])), (latent, values)  # in order
        others = [v for s, v in maxima.items() if s not in {c for c, _ in chosen}]
        assert not others or min(values) >= max(others) - tol, (latent, values, max(others))
        top = [t for t, _ in Counter(ids[s][p] for s, p in chosen if s % 5 != 4).most_common(5)]
        fires = held & (column.astype(np.float16).astype(np.float32) > np.float32(0.1) * column.max())
        predicted = held & np.isin(tokens, top)
        both = int((fires & predicted).sum())
        total = int(fires.sum()) + int(predicted.sum())
        found["score"][latent] = 2 * both / total if total else 0.0
        found["active"][latent] = sum(v > 0 for v in maxima.values())
        found["positives"][latent] = int(fires.sum())
        for h, s in enumerate(held_samples):
            part = slice(start_of[s], start_of[s] + lengths[s])
            found["counts"][latent, h] = [(fires & predicted)[part].sum(), fires[part].sum(), predicted[part].sum()]
    return found


def _bootstrap(counts: np.ndarray, resamples: int = 4000) -> np.ndarray:
    """The F1 of ``resamples`` draws of the held-out samples with replacement (its own seed, and many more
    draws than the extraction's 200, whose percentiles agree with these only as far as Monte Carlo allows)."""
    rng = np.random.default_rng(12345)
    drawn = counts[rng.integers(0, len(counts), size=(resamples, len(counts)))].sum(axis=1)
    total = drawn[:, 1] + drawn[:, 2]
    return np.where(total > 0, 2 * drawn[:, 0] / np.maximum(total, 1), 0.0)


def _ranked(app: Appliance, training_id: str, order: str) -> list[dict]:
    base = f"/api/training/{training_id}/features"
    params = {"sort_by": "interpretability", "order": order, "limit": 500}
    return [row for page in (1, 2) for row in app.get(base, params={**params, "page": page}).json()["data"]]


def test_interpretability_scores_equal_an_independent_computation(app: Appliance, sae: dict, direct: dict) -> None:
    base = f"/api/training/{sae['training_id']}/features"
    ranked = _ranked(app, sae["training_id"], "desc")
    alive = np.nonzero((direct["z"] > 0).any(axis=0))[0]
    assert sorted(r["index"] for r in ranked) == alive.tolist()
    tops = {
        r["index"]: [
            (e["sample"], e["position"]) for e in _feature(app, sae, r["index"], examples=10, window=1)["examples"]
        ]
        for r in ranked
    }
    reference = _reference_scores(direct["z"], direct["ids"], tops, top_k=10)  # the fixture's top_k_examples
    index = [r["index"] for r in ranked]
    assert [r["active_samples"] for r in ranked] == reference["active"][index].tolist()
    assert [r["held_out_positives"] for r in ranked] == reference["positives"][index].tolist()
    supported = (reference["active"] >= MIN_ACTIVE_SAMPLES) & (reference["positives"] >= MIN_HELD_OUT_POSITIVES)
    scored = [r for r in ranked if supported[r["index"]]]
    rare = [r for r in ranked if not supported[r["index"]]]
    assert scored and rare  # the floor parts the fixture's features: the checks below have teeth
    assert all(r["score_state"] == "scored" for r in scored)
    assert all(r["score_state"] == "too_rare" and r["score"] is None for r in rare)
    assert all(r["score_low"] is None and r["score_high"] is None for r in rare)
    expected = reference["score"][[r["index"] for r in scored]]
    np.testing.assert_allclose([r["score"] for r in scored], expected, atol=1e-4)
    assert 0 < reference["score"][supported].mean() < 1  # neither all perfect nor all zero

    # The interval holds the score and agrees with an independent bootstrap over held-out samples; the
    # ranking is its lower bound, best first, the unscored after every scored feature.
    assert all(r["score_low"] <= r["score"] <= r["score_high"] for r in scored)
    assert ranked[: len(scored)] == scored and ranked[len(scored) :] == rare
    lows = [r["score_low"] for r in scored]
    assert lows == sorted(lows, reverse=True)
    gaps = []
    for row in scored:
        # With 200 resamples, the 2.5th percentile lies between the 0.1th and the 10th of many more, all but
        # surely (likewise the 97.5th); typically it is within a hair of their 2.5th.
        f1 = _bootstrap(reference["counts"][row["index"]])
        low_band, high_band, typical = np.percentile(f1, [[0.1, 10], [90, 99.9], [2.5, 97.5]])
        assert low_band[0] - 1e-4 <= row["score_low"] <= low_band[1] + 1e-4, (row, low_band)
        assert high_band[0] - 1e-4 <= row["score_high"] <= high_band[1] + 1e-4, (row, high_band)
        gaps += [row["score_low"] - typical[0], row["score_high"] - typical[1]]
    assert np.median(np.abs(gaps)) < 0.01, gaps
    assert np.mean([r["score_high"] - r["score_low"] for r in scored]) > 0.01  # intervals, not points

    summary = app.get(f"{base}/summary").json()["data"]["summary"]
    assert (summary["scored"], summary["too_rare"]) == (len(scored), len(rare))
    assert (summary["min_active_samples"], summary["min_held_out_positives"]) == (10, 5)
    assert "bootstrap" in summary["score_interval"]
    kept = reference["score"][supported]
    assert summary["interpretable_share"] == pytest.approx(float((kept >= 0.5).mean()), abs=1e-4)
    assert summary["mean_score"] == pytest.approx(float(kept.mean()), abs=1e-4)


def test_top_features_have_support_and_the_unscored_come_last(app: Appliance, sae: dict) -> None:
    """Acceptance: with special tokens left out (the default), the top 20 by interpretability each have
    the support floor, an interval and no special token as their top example; features under the floor
    are listed unscored, after every scored one in both orders. Then the fixture's own extraction again:
    the same scores and intervals as before (the bootstrap is seeded)."""
    tid = sae["training_id"]
    before = _ranked(app, tid, "desc")
    body = {"training_id": tid, "context_length": 64, "eval_samples": EVAL_SAMPLES, "top_k_examples": 10}
    app.completed(app.post("/api/features/extract", json=body))
    try:
        desc, asc = _ranked(app, tid, "desc"), _ranked(app, tid, "asc")
        assert len(desc) >= 40
        for row in desc[:20]:
            assert row["score_state"] == "scored", row
            assert row["active_samples"] >= MIN_ACTIVE_SAMPLES and row["held_out_positives"] >= MIN_HELD_OUT_POSITIVES
            assert row["score_low"] <= row["score"] <= row["score_high"]
            top = _feature(app, sae, row["index"], examples=1, window=1)["examples"][0]
            assert top["token_ids"][top["max_index"]] != 0  # <|endoftext|>, the demo tokenizer's special token
        for ranked in (desc, asc):
            states = [r["score_state"] for r in ranked]
            assert "too_rare" in states and states == sorted(states, key=lambda s: s != "scored")
        lows = [r["score_low"] for r in asc if r["score_state"] == "scored"]
        assert lows == sorted(lows)
        rare = [r for r in desc if r["score_state"] == "too_rare"]
        assert all(r["score"] is None and r["score_low"] is None for r in rare)
        floor = (MIN_ACTIVE_SAMPLES, MIN_HELD_OUT_POSITIVES)
        assert all(r["active_samples"] < floor[0] or r["held_out_positives"] < floor[1] for r in rare)
    finally:
        body.update(exclude_special_tokens=False)  # the module's extraction, as the fixture made it
        app.completed(app.post("/api/features/extract", json=body))
    again = _ranked(app, tid, "desc")
    fields = ("index", "score", "score_low", "score_high", "active_samples", "held_out_positives")
    assert [[r[f] for f in fields] for r in again] == [[r[f] for f in fields] for r in before]


def test_browse_search_label_favourite_and_map(app: Appliance, sae: dict) -> None:
    tid = sae["training_id"]
    base = f"/api/training/{tid}/features"
    by_freq = app.get(base, params={"sort_by": "frequency", "order": "desc", "limit": 10}).json()
    frequencies = [r["frequency"] for r in by_freq["data"]]
    assert frequencies == sorted(frequencies, reverse=True) and by_freq["meta"]["pagination"]["total"] > 10
    second = app.get(base, params={"sort_by": "frequency", "order": "desc", "limit": 10, "page": 2}).json()["data"]
    assert second[0]["frequency"] <= frequencies[-1]
    scored = [
        row
        for page in (1, 2)
        for row in app.get(base, params={"sort_by": "interpretability", "limit": 500, "page": page}).json()["data"]
    ]
    assert len(scored) == app.get(f"{base}/summary").json()["data"]["summary"]["alive"]
    assert all(r["label"].startswith("fires on") for r in scored)  # the scores: the test below
    assert scored[0]["example"]["tokens"]
    summary = app.get(f"{base}/summary").json()["data"]["summary"]

    # Search finds a feature by its top token: the best-scored one whose top token is visible text.
    feature, token = next(
        (
            (r["index"], top)
            for r in scored
            if (top := _feature(app, sae, r["index"])["top_tokens"][0][0].strip().lower())
        ),
        (None, ""),
    )
    assert feature is not None and token, "no scored feature has a visible top token"
    found = app.get(base, params={"search": token, "limit": 500}).json()["data"]
    assert feature in [r["index"] for r in found]
    feature = scored[0]["index"]
    renamed = app.client().patch(f"{base}/{feature}", json={"name": "Sockets and files", "is_favorite": True})
    assert renamed.status_code == 200 and renamed.json()["data"]["label"] == "Sockets and files"
    assert [r["index"] for r in app.get(base, params={"search": "sockets and", "limit": 50}).json()["data"]] == [
        feature
    ]
    assert [r["index"] for r in app.get(base, params={"favorites_only": True}).json()["data"]] == [feature]
    assert app.get(base, params={"search": f"#{feature}"}).json()["data"][0]["index"] == feature

    points = app.get(f"{base}/map").json()["data"]
    assert len(points) == summary["alive"] and all(0 <= p["x"] <= 1 and 0 <= p["y"] <= 1 for p in points)
    matrix = app.get(f"{base}/correlation-matrix", params={"top": 8}).json()["data"]
    assert len(matrix["features"]) == 8 and all(matrix["matrix"][i][i] == 1.0 for i in range(8))

    assert_error(app.get(f"{base}/99999"), 404, "NOT_FOUND")
    assert_error(app.client().patch(f"{base}/{feature}", json={}), 400, "VALIDATION_ERROR")
    assert_error(app.get(base, params={"sort_by": "magic"}), 400, "VALIDATION_ERROR")
    assert_error(app.post("/api/features/extract", json={"training_id": "tr_missing0000"}), 404, "NOT_FOUND")


def test_the_api_returns_the_actions_each_state_allows(app: Appliance, sae: dict) -> None:
    """The UI reads what it may offer from the API instead of re-deriving it from statuses."""
    from appliance.services.features import extraction_actions, feature_actions

    assert extraction_actions("none") == ["extract"] and extraction_actions("error") == ["extract"]
    assert extraction_actions("extracting") == ["cancel"]
    assert "explain" in extraction_actions("ready") and "ablation" not in feature_actions(0.0)
    base = f"/api/training/{sae['training_id']}/features"
    assert app.get(f"{base}/summary").json()["data"]["actions"] == ["extract", "explain", "steer"]
    live = _live(app, sae, limit=1)[0]
    assert live["actions"] == ["update", "activations_on", "ablation", "explain", "steer"]
    assert _feature(app, sae, live["index"])["actions"] == live["actions"]
