"""Killing either process loses nothing: job rows and events stay consistent (the job table is the truth)."""

from __future__ import annotations

import signal
import sqlite3
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support import Appliance, SSEReader, demo_activations, job_finished, started_demo, wait_until


def _db(app: Appliance) -> sqlite3.Connection:
    conn = sqlite3.connect(app.data_dir / "mistudio.db")
    conn.row_factory = sqlite3.Row
    return conn


def _assert_consistent(app: Appliance) -> None:
    conn = _db(app)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
        # Every job's last lifecycle event agrees with its row.
        for job in conn.execute("SELECT id, status FROM jobs"):
            last = conn.execute(
                "SELECT data FROM events WHERE job_id = ? AND type = 'job.updated' ORDER BY id DESC LIMIT 1",
                (job["id"],),
            ).fetchone()
            assert last is not None and f'"status":"{job["status"]}"' in last["data"], job["id"]
    finally:
        conn.close()


def test_worker_killed_mid_job_marks_it_failed_on_restart(appliance: Appliance) -> None:
    job_id = appliance.selftest(steps=1000, delay_ms=20)
    job = appliance.wait_status(job_id, "running")
    appliance.wait_status(job_id, "running")
    time.sleep(0.3)
    appliance.worker.kill()  # SIGKILL: no chance to clean up
    appliance.worker.wait()
    assert appliance.job(job_id)["status"] == "running"  # nobody has noticed yet
    assert appliance.get("/api/health").json()["data"]["status"] in ("healthy", "degraded")
    appliance.start_worker()
    job = appliance.wait_status(job_id, "failed", timeout=60)
    assert job["error"]["code"] == "WORKER_RESTARTED"
    _assert_consistent(appliance)
    # The restarted worker serves new jobs.
    assert appliance.wait_status(appliance.selftest(steps=1, delay_ms=0), "completed")["attempts"] == 1


def test_sigterm_requeues_the_running_job_and_it_completes_later(appliance: Appliance) -> None:
    job_id = appliance.selftest(steps=200, delay_ms=50)
    appliance.wait_status(job_id, "running")
    # 200 steps of 50 ms: a worker that finished the job before stopping would leave it completed.
    appliance.stop_proc(appliance.worker, signal.SIGTERM, timeout=60)
    job = appliance.job(job_id)
    assert job["status"] == "queued", job
    appliance.start_worker()
    job = appliance.wait_status(job_id, "completed", timeout=60)
    assert job["attempts"] == 2
    _assert_consistent(appliance)


def test_api_killed_loses_no_job_or_event(appliance: Appliance) -> None:
    job_ids = [appliance.selftest(steps=20, delay_ms=25) for _ in range(2)]
    appliance.wait_status(job_ids[0], "running")
    appliance.api.kill()
    appliance.api.wait()
    time.sleep(1.5)  # the worker goes on writing while the API is down
    appliance.start_api()
    for job_id in job_ids:
        appliance.wait_status(job_id, "completed", timeout=20)
    conn = _db(appliance)
    stored = [r[0] for r in conn.execute("SELECT id FROM events ORDER BY id")]
    conn.close()
    # A client resuming from before the crash gets everything that was written, in order.
    with SSEReader(appliance.url + "/api/events", headers={"Last-Event-ID": "0"}) as reader:
        reader.wait_for(lambda events: len(events) >= len(stored))
    assert reader.ids()[: len(stored)] == stored
    for job_id in job_ids:
        assert job_finished(job_id)(reader.events)
    _assert_consistent(appliance)


def test_queued_job_without_a_task_is_sent_again_at_worker_start(make_appliance) -> None:
    app = make_appliance()
    app.start_api()
    job_id = app.selftest(steps=1, delay_ms=0)
    # Simulate an API that died between writing the job row and enqueueing its task.
    queue = sqlite3.connect(app.data_dir / "queue.db")
    queue.execute("DELETE FROM task")
    queue.commit()
    queue.close()
    app.start_worker()
    assert app.wait_status(job_id, "completed", timeout=60)["attempts"] == 1


# -- the newer architectures: their state (BatchTopK's threshold, the gated paths, a target-L0 controller) survives
LAYER = 2
STEPS = 200


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Appliance]:
    yield from started_demo(tmp_path_factory, "durability")


@pytest.fixture(scope="module")
def residual(demo: Appliance) -> dict:
    return demo_activations(demo, LAYER, batch_size=32, max_samples=300, context_length=64)[1]


def _body(act: dict, encoder: str, auto_save_interval: int, **hp: Any) -> dict[str, Any]:
    return {
        "activation_id": act["id"],
        "layer": LAYER,
        "encoder_type": encoder,
        "seed": 11,
        "auto_save_interval": auto_save_interval,
        "hyperparameters": {
            "expansion_factor": 4,
            "batch_size": 256,
            "total_steps": STEPS,
            "warmup_steps": 20,
            "log_every": 10,
            **hp,
        },
    }


def _train(app: Appliance, act: dict, encoder: str, auto_save_interval: int, **hp: Any) -> dict:
    response = app.post("/api/training/start", json=_body(act, encoder, auto_save_interval, **hp))
    assert response.status_code == 202, response.text
    return app.get(f"/api/jobs/{response.json()['data']['job_id']}").json()["data"]


def _curve(app: Appliance, training_id: str) -> list[tuple[Any, ...]]:
    """Each logged step's figures, with the sparsity coefficient where the run adapts one."""
    rows = app.get(f"/api/training/{training_id}/metrics").json()["data"]
    return [(m["step"], m["loss"], m["l0"], m.get("sparsity_coefficient")) for m in rows]


def _same_run(app: Appliance, training_id: str, reference: str) -> None:
    """The same curve, step by step, and the same held-out evaluation (an inference threshold lost in a
    checkpoint changes no training loss, only the evaluation's encode)."""
    got, expected = _curve(app, training_id), _curve(app, reference)
    assert [row[0] for row in got] == [row[0] for row in expected]
    for row, ref in zip(got, expected, strict=True):
        for value, wanted in zip(row[1:], ref[1:], strict=True):
            assert value == (wanted if wanted is None else pytest.approx(wanted, rel=1e-4, abs=1e-6)), row
    evaluations = [app.get(f"/api/training/{tid}").json()["data"]["evaluation"] for tid in (training_id, reference)]
    for key in ("explained_variance", "l0"):
        assert evaluations[0][key] == pytest.approx(evaluations[1][key], rel=1e-4, abs=1e-6), key


@pytest.mark.parametrize(
    "encoder,hp",
    [
        ("batchtopk", {"k": 16}),
        ("matryoshka_batchtopk", {"k": 16, "matryoshka_widths": [32, 128, 512]}),
        # With a target L0: the controller's coefficient is part of the trajectory to continue.
        ("gated", {"target_l0": 16}),
        ("sparse", {"target_l0": 16}),
        ("jumprelu", {"target_l0": 16}),  # its thresholds in their own, faster, optimizer group
    ],
)
def test_pause_resume_and_kill_9_continue_each_new_architecture_on_the_same_trajectory(
    demo: Appliance, residual: dict, encoder: str, hp: dict[str, Any]
) -> None:
    reference = demo.completed(demo.post("/api/training/start", json=_body(residual, encoder, 0, **hp)), timeout=600)

    # One run, paused part-way and resumed, then its worker killed (-9) and restarted: it resumes from the
    # last auto-save, and the whole run is the reference's.
    job = _train(demo, residual, encoder, auto_save_interval=30, **hp)
    tid = job["target"]["id"]

    def step() -> int:
        return int(demo.get(f"/api/training/{tid}").json()["data"]["step"])

    wait_until(lambda: step() >= 40, timeout=300, what="step 40")
    assert demo.post(f"/api/training/{tid}/pause").status_code == 200
    demo.wait_status(job["id"], "paused", timeout=60)
    paused_at = step()
    assert demo.post(f"/api/training/{tid}/resume").status_code == 200
    wait_until(lambda: step() >= paused_at + 40, timeout=300, what=f"step {paused_at + 40}")
    demo.worker.send_signal(signal.SIGKILL)
    demo.worker.wait(10)
    demo.start_worker()
    assert demo.wait_status(job["id"], "completed", "failed", timeout=600)["status"] == "completed"
    events = demo.get(f"/api/jobs/{job['id']}/events", params={"format": "json"}).json()["data"]
    resumed = [e["data"]["step"] for e in events if e["type"] == "training.log" and "Resumed" in e["data"]["message"]]
    # The pause's own checkpoint (at the step it took effect, at or after the one last shown), then an auto-save.
    assert len(resumed) == 2 and resumed[0] >= paused_at, (resumed, paused_at)
    assert resumed[1] % 30 == 0 and resumed[0] < resumed[1] < STEPS, resumed
    _same_run(demo, tid, reference["target"]["id"])
