"""Hook names mean the same tensor in TransformerLens: loaded with the kwargs every export writes, it
holds under each of the demo model's hook names exactly what the appliance captures there; and SAEs
trained here (through the API and the worker), loaded in SAELens and fed TransformerLens' tensors at
their exported hook names, give the appliance's latents, L0 and explained variance.

TransformerLens' ``from_pretrained`` wants an official model name and the Hub, so the demo model (a
GPT-2) is converted as it would be: its HF config mapped as TransformerLens' GPT-2 branch does, its
weights by TransformerLens' own GPT-2 converter, then ``load_and_process_state_dict`` with the kwargs.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from typing import Any

import msgspec
import pytest
import torch
from sae_lens import SAE
from transformer_lens import HookedTransformer, HookedTransformerConfig
from transformer_lens.pretrained.weight_conversions.gpt2 import convert_gpt2_weights

from appliance.contracts.params.models import HookPoint
from appliance.contracts.tokenization import load_tokenizer
from appliance.data.layout import DataLayout
from appliance.demo_kit import MODEL_DIR
from appliance.pipeline.activations.extract import Capture
from appliance.pipeline.models.architecture import describe
from appliance.pipeline.models.lens import TRANSFORMER_LENS_KWARGS
from appliance.pipeline.models.loading import load
from appliance.pipeline.sae.io.saelens import load_folder
from tests.support import Appliance, demo_kit, started_demo
from tests.test_api_contract import assert_error

torch.set_num_threads(1)
LAYER = 1
TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "Once upon a time there was a little girl who lived in a village near the forest.",
    "She liked to play with her friends in the park every day after school.",
]


def lens_model(hf: Any, **kwargs: bool) -> HookedTransformer:
    c = hf.config
    cfg = HookedTransformerConfig(
        d_model=c.n_embd,
        d_head=c.n_embd // c.n_head,
        n_heads=c.n_head,
        d_mlp=c.n_inner or 4 * c.n_embd,
        n_layers=c.n_layer,
        n_ctx=c.n_positions,
        eps=c.layer_norm_epsilon,
        d_vocab=c.vocab_size,
        act_fn=c.activation_function,
        use_attn_scale=c.scale_attn_weights,
        scale_attn_by_inverse_layer_idx=c.scale_attn_by_inverse_layer_idx,
        normalization_type="LN",
        original_architecture="GPT2LMHeadModel",
        device="cpu",
        dtype=torch.float32,
    )
    model = HookedTransformer(cfg, move_to_device=False)
    model.load_and_process_state_dict(convert_gpt2_weights(hf, cfg), **kwargs)
    return model.eval()


def relative(ours: torch.Tensor, theirs: torch.Tensor) -> float:
    return float((ours - theirs).abs().max() / theirs.abs().max().clamp_min(1e-12))


@pytest.fixture(scope="module")
def demo() -> dict[str, Any]:
    """The demo model as the worker loads it, its hook points, token ids of a few texts, and what the
    worker's capture code reads at every hook point ([batch, seq, d])."""
    model = load(MODEL_DIR, "fp32", "cpu")
    points = [msgspec.convert(p, HookPoint) for p in describe(model)["hook_points"]]
    tokenizer = load_tokenizer("demo", MODEL_DIR)
    rows = [tokenizer.encode(text).ids for text in TEXTS]
    width = min(len(r) for r in rows)
    ids = torch.tensor([r[:width] for r in rows])
    capture = Capture(model, points)
    try:
        flat, _, _ = capture([r[:width] for r in rows])
    finally:
        capture.close()
    ours = {name: t.reshape(len(rows), width, -1) for name, t in flat.items()}
    return {"model": model, "points": points, "ids": ids, "ours": ours}


def test_every_hook_name_is_transformer_lens_tensor(demo: dict[str, Any]) -> None:
    lens = lens_model(demo["model"], **TRANSFORMER_LENS_KWARGS)
    with torch.no_grad():
        _, cache = lens.run_with_cache(demo["ids"])
    points = demo["points"]
    assert {p.type for p in points} == {"residual", "mlp_in", "mlp", "attention"}
    assert len(points) == 4 * demo["model"].config.n_layer
    for point in points:
        assert relative(demo["ours"][point.name], cache[point.name]) <= 1e-4, point.name

    # What did not hold before: TransformerLens' default processing (centred writing weights, folded
    # norms) changes the residual stream, and the MLP's own input (after the norm's affine) is not
    # ln2.hook_normalized.
    processed = lens_model(demo["model"])
    with torch.no_grad():
        _, default_cache = processed.run_with_cache(demo["ids"])
    name = f"blocks.{LAYER}.hook_resid_post"
    assert relative(demo["ours"][name], default_cache[name]) > 1e-3
    mlp_input = demo["model"].transformer.h[LAYER].ln_2(cache[f"blocks.{LAYER}.hook_resid_mid"])
    assert relative(mlp_input, cache[f"blocks.{LAYER}.ln2.hook_normalized"]) > 1e-1


# -- SAEs trained here, read by SAELens on TransformerLens' tensors -------------------------------
@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Appliance]:
    yield from started_demo(tmp_path_factory, "peer_lens")


def train(app: Appliance, encoder: str, **hp: Any) -> dict[str, Any]:
    """A short streamed training on the demo model; its row."""
    model, dataset = demo_kit(app)
    body = {
        "model_id": model["id"],
        "dataset_id": dataset["id"],
        "context_length": 32,
        "max_samples": 200,
        "layer": LAYER,
        "encoder_type": encoder,
        "hyperparameters": {"expansion_factor": 2, "batch_size": 128, "total_steps": 40, "log_every": 20, **hp},
    }
    response = app.post("/api/training/start", json=body)
    assert response.status_code == 202, response.text
    job = app.wait_status(response.json()["data"]["job_id"], "completed", "failed", timeout=600)
    assert job["status"] == "completed", job["error"]
    return app.get(f"/api/training/{job['target']['id']}").json()["data"]


def quality(sae_encode: Any, reconstruct: Any, x: torch.Tensor, target: torch.Tensor) -> tuple[Any, float, float]:
    with torch.no_grad():
        z = sae_encode(x)
        x_hat = reconstruct(x)
    ev = 1 - float((x_hat - target).pow(2).sum() / (target - target.mean(0)).pow(2).sum())
    return z, float((z > 0).float().sum(-1).mean()), ev


@pytest.mark.parametrize("encoder,hp", [("topk", {"k": 8}), ("transcoder", {"l1_coefficient": 1.0})])
def test_export_reads_transformer_lens_tensors_as_trained(
    app: Appliance, demo: dict[str, Any], encoder: str, hp: dict[str, Any]
) -> None:
    row = train(app, encoder, **hp)
    folder = DataLayout(app.data_dir).export(row["id"])
    metadata = json.loads((folder / "cfg.json").read_text())["metadata"]
    assert metadata["model_from_pretrained_kwargs"] == TRANSFORMER_LENS_KWARGS
    assert metadata["model_class_name"] == "HookedTransformer"
    assert metadata["prepend_bos"] is True and metadata["context_size"] == 32
    assert metadata["mistudio_training_id"] == row["id"] and metadata["mistudio_model_id"] == row["model_id"]
    model_row, dataset_row = demo_kit(app)
    assert metadata["model_name"] == model_row["name"] and metadata["dataset_path"] == dataset_row["name"]
    assert "model_id" not in metadata and "training_id" not in metadata

    lens = lens_model(demo["model"], **metadata["model_from_pretrained_kwargs"])
    with torch.no_grad():
        _, cache = lens.run_with_cache(demo["ids"])
    source, target = metadata["hook_name"], metadata.get("hook_name_out", metadata["hook_name"])
    theirs = SAE.load_from_disk(str(folder), device="cpu")
    ours, _ = load_folder(folder)
    d = demo["ours"][source].shape[-1]
    z_ours, l0_ours, ev_ours = quality(
        ours.encode, ours.reconstruct, demo["ours"][source].reshape(-1, d), demo["ours"][target].reshape(-1, d)
    )
    z_theirs, l0_theirs, ev_theirs = quality(
        theirs.encode,
        lambda x: theirs.decode(theirs.encode(x)),
        cache[source].reshape(-1, d),
        cache[target].reshape(-1, d),
    )
    assert relative(z_ours, z_theirs) <= 1e-4
    assert l0_ours == l0_theirs and l0_ours > 0
    assert abs(ev_ours - ev_theirs) <= 1e-4
    if encoder == "transcoder":
        # Before: the transcoder read the MLP's input after the norm's affine under this name; that
        # tensor is not TransformerLens' and fed in its place the latents differ.
        old = demo["model"].transformer.h[LAYER].ln_2(cache[f"blocks.{LAYER}.hook_resid_mid"]).reshape(-1, d)
        with torch.no_grad():
            assert relative(theirs.encode(old), z_theirs) > 1e-2


def test_mlp_in_read_by_an_earlier_version_is_refused(app: Appliance) -> None:
    """Models and activation sets whose mlp_in is the value after the affine are never used under the
    new meaning: extraction and training refuse them with a VALIDATION_ERROR saying what to do."""
    model, dataset = demo_kit(app)
    job = app.completed(
        app.post(
            f"/api/models/{model['id']}/extract-activations",
            json={"dataset_id": dataset["id"], "layers": [LAYER], "hook_types": ["mlp_in", "mlp"], "max_samples": 8},
        )
    )
    activation_id = job["target"]["id"]

    def older(document: dict[str, Any], key: str) -> dict[str, Any]:
        for point in document[key]:
            point.pop("norm", None)
        return document

    with sqlite3.connect(app.data_dir / "mistudio.db") as conn:
        arch = json.loads(conn.execute("SELECT architecture FROM models WHERE id = ?", (model["id"],)).fetchone()[0])
        conn.execute(
            "UPDATE models SET architecture = ? WHERE id = ?", (json.dumps(older(arch, "hook_points")), model["id"])
        )
        manifest = json.loads(
            conn.execute("SELECT manifest FROM activation_sets WHERE id = ?", (activation_id,)).fetchone()[0]
        )
        older_manifest = json.dumps(older(manifest, "hooks"))
        conn.execute("UPDATE activation_sets SET manifest = ? WHERE id = ?", (older_manifest, activation_id))
    extract = app.post(
        f"/api/models/{model['id']}/extract-activations",
        json={"dataset_id": dataset["id"], "layers": [LAYER], "hook_types": ["mlp_in"]},
    )
    assert "add the model again" in assert_error(extract, 400, "VALIDATION_ERROR")["message"]
    start = {"layer": LAYER, "encoder_type": "transcoder"}
    streamed = app.post("/api/training/start", json={**start, "model_id": model["id"], "dataset_id": dataset["id"]})
    assert "add the model again" in assert_error(streamed, 400, "VALIDATION_ERROR")["message"]
    stored = app.post("/api/training/start", json={**start, "activation_id": activation_id})
    assert "extract it again" in assert_error(stored, 400, "VALIDATION_ERROR")["message"]
    # Hook points that never had the field (residual, mlp) are as they were.
    mlp = app.post("/api/training/start", json={"layer": LAYER, "hook_type": "mlp", "activation_id": activation_id})
    assert mlp.status_code == 202, mlp.text
