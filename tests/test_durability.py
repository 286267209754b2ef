"""Killing either process loses nothing: job rows and events stay consistent (the job table is the truth)."""

from __future__ import annotations

import signal
import sqlite3
import time

from tests.support import Appliance, SSEReader, job_finished


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
