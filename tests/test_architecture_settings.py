"""The newer architectures' settings through the API: their defaults and templates, what the API refuses
(a target L0 for a k architecture, Matryoshka groups that do not nest or do not end at the SAE's width),
the default groups a Matryoshka training records, and its features filtered by prefix group in the browser
and the map, with each feature's group on its row, its page and the extraction's summary."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from appliance.errors import ValidationError
from appliance.services.features import group_range
from tests.support import Appliance, demo_kit, demo_sae, started_demo
from tests.test_api_contract import assert_error

LAYER = 2
WIDTHS = [32, 96, 256]  # 2 x the demo model's 128-wide residual stream


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Appliance]:
    yield from started_demo(tmp_path_factory, "architectures", HF_HUB_OFFLINE="1")


def _start(app: Appliance, encoder: str, **hp: Any):
    model, dataset = demo_kit(app)
    body = {
        "model_id": model["id"],
        "dataset_id": dataset["id"],
        "layer": LAYER,
        "encoder_type": encoder,
        "max_samples": 50,
        "context_length": 64,
        "hyperparameters": {"expansion_factor": 2, "batch_size": 64, "total_steps": 1, **hp},
    }
    return app.post("/api/training/start", json=body)


def test_defaults_and_templates_cover_the_new_architectures(app: Appliance) -> None:
    each = app.get("/api/training/defaults").json()["data"]["by_encoder_type"]
    assert each["batchtopk"]["learning_rate"] == each["matryoshka_batchtopk"]["learning_rate"] == 3e-4
    assert each["batchtopk"]["l1_coefficient"] is None and each["gated"]["l1_coefficient"] > 0
    for hp in each.values():
        assert hp["target_l0"] is None and hp["matryoshka_widths"] is None and hp["topk_threshold_lr"] == 0.01
    seeds = {t["name"]: t["config"] for t in app.get("/api/templates/training").json()["data"]}
    assert seeds["Matryoshka BatchTopK"]["encoder_type"] == "matryoshka_batchtopk"
    assert seeds["Sparse at a target L0"]["hyperparameters"]["target_l0"] == 32
    created = app.post("/api/templates/training", json={"name": "g", "config": {"encoder_type": "gated"}})
    assert created.status_code == 201, created.text


def test_settings_an_architecture_cannot_take_are_refused(app: Appliance) -> None:
    for encoder, hp, field in (
        ("topk", {"target_l0": 16}, "target_l0"),
        ("batchtopk", {"target_l0": 16}, "target_l0"),
        ("sparse", {"target_l0": 256}, "target_l0"),  # as many as the SAE has latents
        ("batchtopk", {"k": 257}, "k"),
        ("batchtopk", {"matryoshka_widths": [128, 256]}, "matryoshka_widths"),
        ("matryoshka_batchtopk", {"matryoshka_widths": [64, 32, 256]}, "matryoshka_widths"),
        ("matryoshka_batchtopk", {"matryoshka_widths": [64, 64, 256]}, "matryoshka_widths"),
        ("matryoshka_batchtopk", {"matryoshka_widths": [64, 128]}, "matryoshka_widths"),
        ("matryoshka_batchtopk", {"matryoshka_widths": []}, "matryoshka_widths"),
    ):
        error = assert_error(_start(app, encoder, **hp), 400, "VALIDATION_ERROR")
        assert error["details"]["field"] == f"hyperparameters.{field}", (encoder, hp, error)
    assert_error(_start(app, "gated", target_l0=0), 400, "VALIDATION_ERROR")
    # What each may take is accepted; a Matryoshka training records the default groups it got.
    for encoder, hp in (("gated", {"target_l0": 16}), ("jumprelu", {"target_l0": 16}), ("batchtopk", {"k": 16})):
        assert _start(app, encoder, **hp).status_code == 202
    job = _start(app, "matryoshka_batchtopk", k=16)
    assert job.status_code == 202, job.text
    target = app.get(f"/api/jobs/{job.json()['data']['job_id']}").json()["data"]["target"]
    training = app.get(f"/api/training/{target['id']}").json()["data"]
    assert training["config"]["hyperparameters"]["matryoshka_widths"] == [16, 32, 64, 128, 256]


def test_a_matryoshka_saes_features_filter_by_prefix_group(app: Appliance) -> None:
    trained, _ = demo_sae(
        app,
        LAYER,
        "matryoshka_batchtopk",
        max_samples=200,
        seed=3,
        extraction={"eval_samples": 64, "top_k_examples": 5},
        expansion_factor=2,
        k=16,
        matryoshka_widths=WIDTHS,
        total_steps=60,
        log_every=20,
    )
    tid = trained["target"]["id"]
    url = f"/api/training/{tid}/features"
    assert app.get(f"{url}/summary").json()["data"]["matryoshka_widths"] == WIDTHS
    everything = app.get(url, params={"include_dead": True, "limit": 500}).json()
    assert everything["meta"]["pagination"]["total"] == WIDTHS[-1]
    seen = []
    for group, (start, stop) in enumerate(zip([0, *WIDTHS[:-1]], WIDTHS, strict=True)):
        page = app.get(url, params={"group": group, "include_dead": True, "limit": 500}).json()
        indices = [row["index"] for row in page["data"]]
        assert page["meta"]["pagination"]["total"] == stop - start == len(indices)
        assert sorted(indices) == list(range(start, stop))
        assert {row["group"] for row in page["data"]} == {group}
        # Filters combine: the live ones of the group, by index.
        live = app.get(url, params={"group": group, "sort_by": "index", "order": "asc", "limit": 500}).json()["data"]
        assert [r["index"] for r in live] == sorted(r["index"] for r in page["data"] if r["frequency"] > 0)
        points = app.get(f"{url}/map", params={"group": group}).json()["data"]
        assert all(start <= p["index"] < stop and p["group"] == group for p in points)
        seen += indices
    assert sorted(seen) == list(range(WIDTHS[-1]))
    assert app.get(f"{url}/40").json()["data"]["group"] == 1
    assert_error(app.get(url, params={"group": len(WIDTHS)}), 400, "VALIDATION_ERROR")
    assert_error(app.get(f"{url}/map", params={"group": len(WIDTHS)}), 400, "VALIDATION_ERROR")
    # It steers like the others: a clamp reads the SAE's encoder for the chosen latents only.
    features = [{"index": 40, "coefficient": 2.0, "mode": "clamp"}, {"index": 5, "coefficient": 0.0, "mode": "ablate"}]
    steered = app.post(
        "/api/steering/generate",
        json={"training_id": tid, "prompt": "def read(", "max_tokens": 6, "features": features},
        timeout=300,
    )
    assert steered.status_code == 200, steered.text


def test_only_a_matryoshka_sae_has_groups() -> None:
    assert group_range(WIDTHS, 1) == (32, 96) and group_range(None, None) is None
    with pytest.raises(ValidationError):
        group_range(None, 0)


def test_the_memory_plan_counts_each_architectures_own_parameters_and_batch() -> None:
    """The weights, gradients and optimizer state the plan admits cover every parameter of each class
    (the gated paths' b_gate, r_mag and b_mag too); Matryoshka's batch holds each prefix's reconstruction."""
    from appliance.contracts.hyperparameters import Hyperparameters
    from appliance.memory.estimates import estimate_sae_steps
    from appliance.pipeline.sae import CLASSES, sae_config

    hp = Hyperparameters(d_sae=512, batch_size=256, matryoshka_widths=[32, 128, 512])
    for kind, cls in CLASSES.items():
        sae = cls(sae_config(kind, 64, hp, d_out=64 if kind == "transcoder" else None))  # type: ignore[arg-type]
        parts = estimate_sae_steps(kind, 64, hp).parts
        weights = 4 * sum(p.numel() for p in sae.parameters())
        assert parts["sae weights"] >= weights and parts["optimizer state"] >= 2 * weights, kind
    plain, nested = (estimate_sae_steps(kind, 64, hp).parts["batch"] for kind in ("batchtopk", "matryoshka_batchtopk"))
    assert nested - plain == 256 * 3 * 64 * 4 * 2  # 3 groups' shares of the reconstruction, and their gradients
