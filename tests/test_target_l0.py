"""Target-L0 mode through the API and the worker on the demo model: an SAE asked for an L0 ends near it
with no coefficient named, the coefficient and L0 converge in the metrics, a paused run resumes on the
same trajectory, and the architectures whose L0 is k refuse the mode."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support import Appliance, demo_activations, started_demo, wait_until
from tests.test_api_contract import assert_error

LAYER = 2
TARGET = 16


@pytest.fixture(scope="module")
def app(tmp_path_factory) -> Iterator[Appliance]:
    yield from started_demo(tmp_path_factory, "target_l0")


@pytest.fixture(scope="module")
def activation_set(app: Appliance) -> dict:
    return demo_activations(app, LAYER, hook_types=["residual"], batch_size=32, max_samples=800, context_length=64)[1]


def _start(app: Appliance, act: dict, encoder: str, **hp) -> dict:
    body = {
        "activation_id": act["id"],
        "layer": LAYER,
        "encoder_type": encoder,
        "seed": 7,
        "hyperparameters": {"expansion_factor": 4, "batch_size": 256, "target_l0": TARGET, **hp},
    }
    return app.post("/api/training/start", json=body)


def _metrics(app: Appliance, training_id: str) -> list[dict]:
    return app.get(f"/api/training/{training_id}/metrics").json()["data"]


def test_a_sparse_sae_asked_for_an_l0_ends_within_15_percent_of_it(app: Appliance, activation_set: dict) -> None:
    """No coefficient and no learning rate named: the architecture's defaults, then the controller."""
    from appliance.contracts.hyperparameters import ARCHITECTURE_DEFAULTS

    job = app.completed(_start(app, activation_set, "sparse", total_steps=1000, log_every=50))
    training = app.get(f"/api/training/{job['target']['id']}").json()["data"]
    evaluation = training["evaluation"]
    # Held out (never trained on): within ±15 % of the target, and still a useful SAE. Measured: L0 16.0,
    # explained variance 0.59; the same run without a target ends near L0 50.
    assert TARGET * 0.85 <= evaluation["l0"] <= TARGET * 1.15, evaluation
    assert evaluation["explained_variance"] > 0.45, evaluation
    assert 0.5 < evaluation["ce_loss_recovered"] <= 1, evaluation
    start = ARCHITECTURE_DEFAULTS["sparse"].l1_coefficient
    assert training["config"]["hyperparameters"]["l1_coefficient"] == start  # what it started from
    metrics = _metrics(app, training["id"])
    coefficients = [m["sparsity_coefficient"] for m in metrics]
    # The live charts' two curves: the coefficient moved away from where it started and settled, as L0 did.
    assert abs(coefficients[-1] / start - 1) > 0.3, coefficients
    assert abs(coefficients[-1] / coefficients[-3] - 1) < 0.05, coefficients
    assert all(TARGET * 0.8 <= m["l0"] <= TARGET * 1.2 for m in metrics[-4:]), [m["l0"] for m in metrics]
    assert metrics[0]["l0"] > 2 * TARGET  # it started far from the target
    csv = app.get(f"/api/training/{training['id']}/metrics", params={"format": "csv"}).text.splitlines()
    assert "sparsity_coefficient" in csv[0].split(",")


def test_a_jumprelu_sae_asked_for_an_l0_ends_within_15_percent_of_it(app: Appliance, activation_set: dict) -> None:
    """The sparse test's run for JumpReLU: its thresholds learn fast enough in target-L0 mode to follow the
    coefficient (at the weights' rate they ended at L0 55 here)."""
    job = app.completed(_start(app, activation_set, "jumprelu", total_steps=1000, log_every=50))
    training = app.get(f"/api/training/{job['target']['id']}").json()["data"]
    evaluation = training["evaluation"]
    # Measured: L0 15.8, explained variance 0.60 (the sparse run's); without a target it ends near L0 65.
    assert TARGET * 0.85 <= evaluation["l0"] <= TARGET * 1.15, evaluation
    assert evaluation["explained_variance"] > 0.45, evaluation
    metrics = _metrics(app, training["id"])
    assert metrics[0]["l0"] > 2 * TARGET  # it started far from the target
    assert all(TARGET * 0.8 <= m["l0"] <= TARGET * 1.2 for m in metrics[-4:]), [m["l0"] for m in metrics]


def test_without_a_target_the_coefficient_is_recorded_and_stays(app: Appliance, activation_set: dict) -> None:
    job = app.completed(_start(app, activation_set, "sparse", total_steps=40, log_every=20, target_l0=None))
    assert {m["sparsity_coefficient"] for m in _metrics(app, job["target"]["id"])} == {2.0}
    job = app.completed(_start(app, activation_set, "topk", total_steps=20, log_every=20, k=8, target_l0=None))
    assert [m["sparsity_coefficient"] for m in _metrics(app, job["target"]["id"])] == [None]


def test_pause_and_resume_continue_the_controllers_trajectory(app: Appliance, activation_set: dict) -> None:
    hp = {"total_steps": 200, "log_every": 10}
    reference = app.completed(_start(app, activation_set, "sparse", **hp))
    expected = _metrics(app, reference["target"]["id"])

    response = _start(app, activation_set, "sparse", **hp)
    assert response.status_code == 202, response.text
    job_id = response.json()["data"]["job_id"]
    tid = app.job(job_id)["target"]["id"]
    wait_until(lambda: app.get(f"/api/training/{tid}").json()["data"]["step"] >= 60, timeout=120, what="step 60")
    assert app.post(f"/api/training/{tid}/pause").status_code == 200
    app.wait_status(job_id, "paused", timeout=60)
    assert app.post(f"/api/training/{tid}/resume").status_code == 200
    final = app.wait_status(job_id, "completed", "failed", timeout=300)
    assert final["status"] == "completed", final["error"]
    got = _metrics(app, tid)
    assert [m["step"] for m in got] == [m["step"] for m in expected]
    for mine, theirs in zip(got, expected, strict=True):
        for name in ("loss", "l0", "sparsity_coefficient"):
            assert mine[name] == pytest.approx(theirs[name], rel=1e-4, abs=1e-6), (mine["step"], name)
    # The controller was moving the coefficient across the pause, so a restart from scratch would show.
    assert len({round(m["sparsity_coefficient"], 6) for m in got}) > 5


@pytest.mark.parametrize("target,direction", [(2.0, 1), (60.0, -1)])
def test_the_controller_moves_jumprelus_l0_coefficient_towards_the_target(target: float, direction: int) -> None:
    """JumpReLU's coefficient is its L0 term's: above the target it rises, below it falls (a fresh SAE on
    random data fires about half its 64 latents); a copy from the saved state moves the same way."""
    import torch

    from appliance.contracts.hyperparameters import Hyperparameters
    from appliance.pipeline.sae import build, sae_config
    from appliance.pipeline.sae.sparsity_control import SparsityControl
    from appliance.pipeline.sae.step import train_step

    torch.manual_seed(0)
    cfg = sae_config("jumprelu", 16, Hyperparameters(d_sae=64, jumprelu_init_threshold=0.01))
    sae = build(cfg)
    optimizer = torch.optim.Adam(sae.parameters(), lr=1e-3)
    control, l1 = SparsityControl(cfg, target), cfg.l1_coefficient
    start = cfg.l0_coefficient
    for _ in range(30):
        assert control.apply(l1_ramp=0.5)  # an L1 warm-up scales an L1 coefficient only
        out = train_step(sae, optimizer, torch.randn(64, 16))
        control.update(float(out.l0), pace=1.0)
    control.apply()
    assert (cfg.l0_coefficient - start) * direction > 0 and cfg.l1_coefficient == l1
    copy = SparsityControl(cfg, target)
    copy.load_state_dict(control.state_dict())
    for moved in (control, copy):
        moved.update(40.0, pace=0.5)
    assert copy.coefficient == control.coefficient


@pytest.mark.parametrize("encoder", ["topk", "batchtopk", "matryoshka_batchtopk"])
def test_the_k_architectures_refuse_a_target_l0(app: Appliance, activation_set: dict, encoder: str) -> None:
    response = _start(app, activation_set, encoder, k=8)
    assert_error(response, 400, "VALIDATION_ERROR")
    error = response.json()["error"]
    assert error["details"]["field"] == "hyperparameters.target_l0" and "k" in error["message"], error


def test_a_target_l0_at_or_above_the_width_is_refused(app: Appliance, activation_set: dict) -> None:
    d_sae = 4 * activation_set["manifest"]["d_model"]
    response = _start(app, activation_set, "sparse", target_l0=d_sae)
    assert_error(response, 400, "VALIDATION_ERROR")
    assert response.json()["error"]["details"]["field"] == "hyperparameters.target_l0"
    assert_error(_start(app, activation_set, "sparse", target_l0=0), 400, "VALIDATION_ERROR")
