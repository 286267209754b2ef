"""A training's controls and checkpoints through the API and the worker, on activations streamed from the
demo model: a paused training stops where it paused with the ending a running one's stop gives (its
checkpoint, export and evaluation), and every checkpoint shows the training loss of its own step."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.support import Appliance, demo_kit, started_demo, wait_until
from tests.test_api_contract import assert_error


@pytest.fixture(scope="module")
def app(tmp_path_factory) -> Iterator[Appliance]:
    yield from started_demo(tmp_path_factory, "training_controls", MISTUDIO_KEEP_CHECKPOINTS="0")


def _start(app: Appliance, **hp: int) -> dict:
    model, dataset = demo_kit(app)
    response = app.post(
        "/api/training/start",
        json={
            "model_id": model["id"],
            "dataset_id": dataset["id"],
            "layer": 2,
            "encoder_type": "topk",
            "max_samples": 300,
            "context_length": 64,
            "seed": 3,
            "auto_save_interval": hp.pop("auto_save_interval", 0),
            "hyperparameters": {"k": 8, "expansion_factor": 2, "batch_size": 128, **hp},
        },
    )
    assert response.status_code == 202, response.text
    return app.job(response.json()["data"]["job_id"])


def _training(app: Appliance, tid: str) -> dict:
    return app.get(f"/api/training/{tid}").json()["data"]


def _metrics(app: Appliance, tid: str) -> dict[int, float]:
    return {m["step"]: m["loss"] for m in app.get(f"/api/training/{tid}/metrics").json()["data"]}


def _checkpoints(app: Appliance, tid: str) -> list[dict]:
    return app.get(f"/api/training/{tid}/checkpoints").json()["data"]


def _stopped_at(app: Appliance, tid: str, job_id: str, step: int) -> None:
    """The training ended as a running training's stop ends it, at ``step``: no step ran after it."""
    job = app.wait_status(job_id, "completed", "failed", "cancelled", timeout=300)
    assert job["status"] == "completed", job
    stopped = _training(app, tid)
    assert stopped["status"] == "stopped" and stopped["step"] == step, stopped
    assert stopped["evaluation"]["explained_variance"] > 0
    assert stopped["evaluation"]["ce_loss_recovered"] is not None
    assert max(_metrics(app, tid)) <= step
    final = _checkpoints(app, tid)[-1]
    assert (final["step"], final["kind"]) == (step, "stop") and final["loss"] is not None
    assert app.get(f"/api/training/{tid}/export").status_code == 200


def test_a_paused_training_stops_where_it_paused_with_its_checkpoint_export_and_evaluation(app: Appliance) -> None:
    job = _start(app, total_steps=100_000, log_every=10)
    tid = job["target"]["id"]
    wait_until(lambda: _training(app, tid)["step"] >= 20, timeout=120, what="step 20")
    assert app.post(f"/api/training/{tid}/pause").status_code == 200
    app.wait_status(job["id"], "paused", timeout=60)
    paused = _training(app, tid)
    assert paused["status"] == "paused" and "stop" in paused["actions"]
    assert (_checkpoints(app, tid)[-1]["step"], _checkpoints(app, tid)[-1]["kind"]) == (paused["step"], "pause")
    assert "stop" in app.job(job["id"])["actions"]

    answer = app.post(f"/api/training/{tid}/stop")
    assert answer.status_code == 200, answer.text
    assert answer.json()["data"]["job_id"] == job["id"]  # the paused job runs again, only to end
    _stopped_at(app, tid, job["id"], paused["step"])
    assert_error(app.post(f"/api/training/{tid}/stop"), 409, "CONFLICT")

    # Paused by loading a checkpoint after the run ended (its job is over): a new job ends it there.
    back = app.post(f"/api/training/{tid}/checkpoints/{paused['step']}/load").json()["data"]
    assert back["status"] == "paused" and "stop" in back["actions"]
    again = app.post(f"/api/training/{tid}/stop").json()["data"]
    assert again["job_id"] != job["id"]
    _stopped_at(app, tid, again["job_id"], paused["step"])


def test_every_checkpoint_shows_the_loss_of_its_own_step(app: Appliance) -> None:
    # Auto-saves every 15 steps, metrics every 10: most checkpoints fall between logged steps.
    job = _start(app, total_steps=60, log_every=10, auto_save_interval=15)
    done = app.wait_status(job["id"], "completed", "failed", timeout=300)
    assert done["status"] == "completed", done["error"]
    tid = job["target"]["id"]
    logged = _metrics(app, tid)
    saved = _checkpoints(app, tid)
    assert [c["step"] for c in saved] == [15, 30, 45, 60]
    assert all(c["loss"] is not None and c["loss_step"] is None for c in saved), saved
    # Where a metrics row was logged too, it is the same figure.
    assert [c["loss"] for c in saved if c["step"] in logged] == [logged[30], logged[60]]

    # A checkpoint written before checkpoints recorded their loss shows the loss logged nearest to it, saying where.
    info = app.data_dir / "trainings" / tid / "checkpoints" / "step_00000045" / "info.json"
    info.write_text(json.dumps({k: v for k, v in json.loads(info.read_text()).items() if k != "loss"}))
    old = next(c for c in _checkpoints(app, tid) if c["step"] == 45)
    assert (old["loss"], old["loss_step"]) == (logged[40], 40)
