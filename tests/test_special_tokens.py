"""Special tokens left out (on by default, switchable per job): the demo model's every sample starts
with <|endoftext|>, whose activation is the same everywhere. Extraction stores none of its positions,
a streamed training neither trains nor holds out on them, the spliced evaluation averages without
them, the export's metadata names them in SAELens' terms, and the feature pass never makes one a
feature's top example. Each is checked against the tokenizer and the model run here directly."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import msgspec
import numpy as np
import pytest
import torch

from tests.support import Appliance, demo_activations, demo_kit, demo_sae, started_demo
from tests.test_api_contract import assert_error

LAYER = 1
BOS = 0  # <|endoftext|> in the demo tokenizer, its only special token


@pytest.fixture(scope="module")
def app(tmp_path_factory) -> Iterator[Appliance]:
    yield from started_demo(tmp_path_factory, "special", HF_HUB_OFFLINE="1")


def _ids(app: Appliance, first: int, count: int, context: int) -> list[list[int]]:
    """The demo dataset's samples ``first``.. as the tokenizer makes them, cut to ``context`` tokens."""
    from datasets import load_from_disk
    from tokenizers import Tokenizer

    from appliance.demo_kit import TOKENIZER_FILE

    _, dataset = demo_kit(app)
    texts = load_from_disk(str(app.data_dir / "datasets" / dataset["id"] / "arrow"))[first : first + count]["text"]
    tokenizer = Tokenizer.from_file(str(TOKENIZER_FILE))
    return [e.ids[:context] for e in tokenizer.encode_batch([t or "" for t in texts])]


def _stored_tokens(app: Appliance, act: dict[str, Any]) -> Any:
    """The set's (sample, position, token id) rows, from its tokens_NNNN shards."""
    from safetensors.torch import load_file

    folder = app.data_dir / "activations" / act["id"]
    return torch.cat(
        [load_file(str(folder / f"tokens_{s['index']:04d}.safetensors"))["tokens"] for s in act["manifest"]["shards"]]
    )


def _positions(samples: list[list[int]], left_out: set[int]) -> set[tuple[int, int]]:
    return {(s, p) for s, ids in enumerate(samples) for p, t in enumerate(ids) if t not in left_out}


def test_extraction_leaves_out_special_positions_by_default(app: Appliance) -> None:
    samples = _ids(app, 0, 40, 32)
    assert all(ids[0] == BOS for ids in samples if ids)  # the tokenization prefixes every sample with it
    special = sum(t == BOS for ids in samples for t in ids)
    total = sum(map(len, samples))

    job, act = demo_activations(app, LAYER, max_samples=40, context_length=32)
    manifest = act["manifest"]
    assert act["excluded_token_ids"] == manifest["excluded_token_ids"] == job["result"]["excluded_token_ids"] == [BOS]
    assert manifest["excluded_positions"] == job["result"]["excluded_positions"] == special > 0
    assert manifest["tokens"] == total - special and act["config"]["exclude_special_tokens"] is True
    rows = _stored_tokens(app, act)
    assert BOS not in rows[:, 2].tolist()
    assert {(int(s), int(p)) for s, p, _ in rows.tolist()} == _positions(samples, {BOS})

    job, kept = demo_activations(app, LAYER, max_samples=40, context_length=32, exclude_special_tokens=False)
    assert kept["excluded_token_ids"] == [] and kept["manifest"]["excluded_positions"] == 0
    assert kept["manifest"]["tokens"] == total and job["result"]["excluded_positions"] == 0
    assert int((_stored_tokens(app, kept)[:, 2] == BOS).sum()) == special


def test_explicit_special_token_ids_replace_the_tokenizers(app: Appliance) -> None:
    samples = _ids(app, 0, 30, 32)
    counts = np.bincount([t for ids in samples for t in ids if t != BOS])
    common = int(counts.argmax())  # a plain token, frequent enough to matter
    wanted = {BOS, common}
    _, act = demo_activations(app, LAYER, max_samples=30, context_length=32, special_token_ids=[common, BOS])
    assert act["excluded_token_ids"] == sorted(wanted)
    assert act["manifest"]["excluded_positions"] == sum(t in wanted for ids in samples for t in ids)
    rows = _stored_tokens(app, act)
    assert not set(rows[:, 2].tolist()) & wanted
    assert {(int(s), int(p)) for s, p, _ in rows.tolist()} == _positions(samples, wanted)

    # Only the common token: the start-of-text positions stay.
    _, act = demo_activations(app, LAYER, max_samples=30, context_length=32, special_token_ids=[common])
    assert act["excluded_token_ids"] == [common] and BOS in _stored_tokens(app, act)[:, 2].tolist()

    model, dataset = demo_kit(app)
    for ids in ([4096], [-1]):  # the demo vocabulary has 4,096 tokens
        response = app.post(
            f"/api/models/{model['id']}/extract-activations",
            json={"dataset_id": dataset["id"], "layers": [LAYER], "special_token_ids": ids},
        )
        assert_error(response, 400, "VALIDATION_ERROR")
    body = {"model_id": model["id"], "dataset_id": dataset["id"], "layer": LAYER, "special_token_ids": [4096]}
    assert_error(app.post("/api/training/start", json=body), 400, "VALIDATION_ERROR")


def _bos_activation(app: Appliance, point: dict[str, Any]) -> Any:
    """The hooked activation at a sample's start: the same in every sample (causal attention)."""
    from appliance.demo_kit import MODEL_DIR
    from appliance.pipeline.activations.extract import Capture
    from appliance.pipeline.models.loading import load

    capture = Capture(load(str(MODEL_DIR), "fp32", on="cpu"), [point])
    try:
        return capture([[BOS]])[0][point["name"]].float()[0]
    finally:
        capture.close()


def _held_out(app: Appliance, point: dict[str, Any], exclude: bool) -> Any:
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
        context_length=64,
        max_samples=120,
        exclude_special_tokens=exclude,
    )
    source = StreamedSource(spec, DataLayout(app.data_dir), 2048)
    try:
        return source.held_out()[0]
    finally:
        source.close()


def test_streamed_training_holds_out_and_evaluates_on_the_positions_it_trains_on(app: Appliance) -> None:
    model, dataset = demo_kit(app)
    points = app.get(f"/api/models/{model['id']}/architecture").json()["data"]["hook_points"]
    point = next(p for p in points if p["layer"] == LAYER and p["type"] == "residual")
    bos = _bos_activation(app, point)
    # The stream's held-out rows: none is the start-of-text activation; with the setting off, some are.
    for exclude, expect_bos in ((True, False), (False, True)):
        held = _held_out(app, point, exclude)
        nearest = float((held - bos).norm(dim=-1).min())
        assert (nearest < 1e-3 * float(bos.norm())) is expect_bos, (exclude, nearest)

    body = {
        "model_id": model["id"],
        "dataset_id": dataset["id"],
        "layer": LAYER,
        "encoder_type": "topk",
        "max_samples": 120,
        "context_length": 64,
        "hyperparameters": {"expansion_factor": 2, "batch_size": 128, "k": 8, "total_steps": 20, "log_every": 10},
    }
    job = app.completed(app.post("/api/training/start", json=body))
    training = app.get(f"/api/training/{job['target']['id']}").json()["data"]
    assert training["excluded_token_ids"] == [BOS] and training["config"]["exclude_special_tokens"] is True
    evaluation = training["evaluation"]
    kept = sum(t != BOS for ids in _ids(app, 0, 120, 64) for t in ids)
    assert evaluation["held_out_tokens"] == max(1, int(kept * 0.05))
    # The splice averages over next-token positions whose own token is not a special one.
    spliced = _ids(app, 120, 64, 64)
    assert evaluation["eval_tokens"] == sum(t != BOS for ids in spliced for t in ids[:-1])

    cfg = msgspec.json.decode((app.data_dir / "trainings" / training["id"] / "export" / "cfg.json").read_bytes())
    assert cfg["metadata"]["exclude_special_tokens"] == [BOS]

    off = app.completed(app.post("/api/training/start", json={**body, "exclude_special_tokens": False}))
    training = app.get(f"/api/training/{off['target']['id']}").json()["data"]
    assert training["excluded_token_ids"] == [] and training["evaluation"]["held_out_tokens"] == max(
        1, int(sum(map(len, _ids(app, 0, 120, 64))) * 0.05)
    )
    cfg = msgspec.json.decode((app.data_dir / "trainings" / training["id"] / "export" / "cfg.json").read_bytes())
    assert cfg["metadata"]["exclude_special_tokens"] is False


def test_a_training_on_a_stored_set_inherits_its_choice(app: Appliance) -> None:
    model, _ = demo_kit(app)
    _, act = demo_activations(app, LAYER, max_samples=60, context_length=32)
    body = {
        "activation_id": act["id"],
        "layer": LAYER,
        "encoder_type": "topk",
        "hyperparameters": {"expansion_factor": 2, "batch_size": 64, "k": 8, "total_steps": 10, "log_every": 5},
    }
    job = app.completed(app.post("/api/training/start", json=body))
    training = app.get(f"/api/training/{job['target']['id']}").json()["data"]
    assert training["excluded_token_ids"] == [BOS]
    cfg = msgspec.json.decode((app.data_dir / "trainings" / training["id"] / "export" / "cfg.json").read_bytes())
    assert cfg["metadata"]["exclude_special_tokens"] == [BOS]


def _top_example_tokens(app: Appliance, training_id: str) -> np.ndarray:
    """The token at each live feature's strongest example, from the extraction's stored arrays."""
    folder = app.data_dir / "trainings" / training_id / "features"
    tokens, offsets = np.load(folder / "tokens.npy"), np.load(folder / "offsets.npy")
    values, samples, positions = (np.load(folder / f"top_{n}.npy")[0] for n in ("values", "samples", "positions"))
    live = values > 0
    return tokens[offsets[samples[live]] + positions[live]]


def test_no_feature_has_the_start_of_text_token_as_its_top_example(app: Appliance) -> None:
    extraction = {"eval_samples": 40, "top_k_examples": 5}
    steps = {"k": 16, "total_steps": 40, "log_every": 20}
    trained, job = demo_sae(app, LAYER, "topk", max_samples=200, seed=3, extraction=extraction, **steps)
    summary = job["result"]
    assert summary["excluded_token_ids"] == [BOS]
    assert summary["excluded_positions"] == sum(t == BOS for ids in _ids(app, 0, 40, 64) for t in ids) > 0
    tops = _top_example_tokens(app, trained["target"]["id"])
    assert len(tops) > 0 and BOS not in tops.tolist()
    shown = app.get(f"/api/training/{trained['target']['id']}/features/summary").json()["data"]
    assert shown["summary"]["excluded_token_ids"] == [BOS] and shown["config"]["exclude_special_tokens"] is True

    # The old behaviour, special tokens kept in training and in the feature pass: features spend
    # themselves on the start-of-text token.
    model, dataset = demo_kit(app)
    body = {
        "model_id": model["id"],
        "dataset_id": dataset["id"],
        "layer": LAYER,
        "encoder_type": "topk",
        "max_samples": 200,
        "context_length": 64,
        "seed": 3,
        "exclude_special_tokens": False,
        "hyperparameters": {"expansion_factor": 4, "batch_size": 256, "learning_rate": 1e-3, **steps},
    }
    old = app.completed(app.post("/api/training/start", json=body))
    features = {"training_id": old["target"]["id"], "context_length": 64, **extraction, "exclude_special_tokens": False}
    job = app.completed(app.post("/api/features/extract", json=features))
    assert job["result"]["excluded_positions"] == 0
    assert BOS in _top_example_tokens(app, old["target"]["id"]).tolist()
