"""Jobs through the real worker: lifecycle events, cancellation, lanes and priorities."""

from __future__ import annotations

import shutil
import subprocess
import time

import pytest

from tests.support import Appliance, SSEReader, job_finished, wait_until


def _statuses(events: list[dict], job_id: str) -> list[str]:
    return [
        e["payload"]["data"]["status"]
        for e in events
        if e["event"] == "job.updated" and e["payload"]["job_id"] == job_id
    ]


def test_selftest_lifecycle_over_sse(appliance: Appliance) -> None:
    with SSEReader(appliance.url + "/api/events") as reader:
        wait_until(lambda: reader.retry is not None, timeout=30, what="the retry field")
        assert reader.retry > 0
        job_id = appliance.selftest(steps=5, delay_ms=50)
        reader.wait_for(job_finished(job_id))
    assert _statuses(reader.events, job_id) == ["queued", "running", "completed"]
    progress = [e["payload"]["data"]["progress"] for e in reader.events if e["event"] == "job.progress"]
    assert progress == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0])
    ids = reader.ids()
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    job = appliance.job(job_id)
    assert job["status"] == "completed" and job["progress"] == 1.0 and job["result"] == {"steps": 5}
    assert job["started_at"] >= job["created_at"] and job["finished_at"] >= job["started_at"]
    assert job["actions"] == []  # nothing more can be asked of a finished job
    updates = [e["payload"]["data"] for e in reader.events if e["event"] == "job.updated"]
    assert [u["actions"] for u in updates] == [["cancel"], ["cancel"], []]  # events carry them too


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl not installed")
def test_progress_visible_with_curl(appliance: Appliance) -> None:
    curl = subprocess.Popen(
        ["curl", "-sN", "--max-time", "6", appliance.url + "/api/events?topics=job"], stdout=subprocess.PIPE, text=True
    )
    time.sleep(0.5)
    job_id = appliance.selftest(steps=3, delay_ms=20)
    appliance.wait_status(job_id, "completed")
    time.sleep(0.5)
    curl.terminate()
    out = curl.communicate(timeout=10)[0]
    assert "event: job.progress" in out and f'"job_id":"{job_id}"' in out
    assert '"status":"completed"' in out


def test_job_actions_follow_status_and_kind() -> None:
    from appliance.jobs.registry import job_actions

    assert job_actions("queued", ()) == ["cancel"]
    assert job_actions("running", ()) == ["cancel"]
    controls = ("pause", "resume", "stop", "save_checkpoint")
    assert job_actions("running", controls) == ["cancel", "pause", "stop", "save_checkpoint"]
    assert job_actions("paused", controls) == ["cancel", "resume", "stop"]
    assert all(job_actions(status, controls) == [] for status in ("completed", "failed", "cancelled"))


def test_cancel_stops_a_running_job(appliance: Appliance) -> None:
    # 10,000 steps of 50 ms: left alone it would run for 8 minutes, so a cancelled status with little
    # progress shows the cancel stopped it (how fast is not asserted here: no wall-clock bounds in tests).
    job_id = appliance.selftest(steps=10_000, delay_ms=50)
    appliance.wait_status(job_id, "running")
    assert appliance.job(job_id)["actions"] == ["cancel"]  # the self-test takes no pause or stop
    response = appliance.post(f"/api/jobs/{job_id}/cancel")
    assert response.status_code == 200
    job = appliance.wait_status(job_id, "cancelled", "completed", "failed", timeout=60)
    assert job["status"] == "cancelled"
    assert response.json()["data"]["status"] == "cancelled"  # the answer already shows the outcome
    assert job["finished_at"] is not None and job["progress"] < 0.5
    # It really stopped: no progress after cancellation.
    progress_then = job["progress"]
    time.sleep(0.3)
    assert appliance.job(job_id)["progress"] == progress_then


def test_cancel_queued_job_never_runs(make_appliance) -> None:
    app = make_appliance()
    app.start_api()  # no worker: the job stays queued
    job_id = app.selftest(steps=1, delay_ms=0)
    assert app.job(job_id)["status"] == "queued"
    assert app.post(f"/api/jobs/{job_id}/cancel").json()["data"]["status"] == "cancelled"
    app.start_worker()
    # A job sent after it completes: the worker has been through the queue, the cancelled job included.
    app.wait_status(app.selftest(steps=1, delay_ms=0), "completed", timeout=60)
    job = app.job(job_id)
    assert job["status"] == "cancelled" and job["started_at"] is None and job["attempts"] == 0


def test_interactive_job_not_stuck_behind_heavy_jobs(appliance: Appliance) -> None:
    # The first heavy job runs until cancelled (8 minutes otherwise), so the quick one completing while
    # it runs shows the lanes, whatever the machine's speed.
    heavy_1 = appliance.selftest(steps=10_000, delay_ms=50, lane="heavy")
    appliance.wait_status(heavy_1, "running")
    heavy_2 = appliance.selftest(steps=1, delay_ms=0, lane="heavy")
    quick = appliance.selftest(steps=2, delay_ms=10)
    appliance.wait_status(quick, "completed", timeout=60)
    # Heavy jobs run one at a time: the second waits for the first.
    assert appliance.job(heavy_1)["status"] == "running"
    assert appliance.job(heavy_2)["status"] == "queued"
    appliance.post(f"/api/jobs/{heavy_1}/cancel")
    second = appliance.wait_status(heavy_2, "completed", timeout=60)
    assert second["started_at"] >= appliance.job(heavy_1)["finished_at"]


def test_second_worker_refuses_the_same_data_dir(appliance: Appliance) -> None:
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "appliance", "worker"], env=appliance.env, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 1
    assert "already serves" in result.stderr
    assert appliance.worker.poll() is None


def test_job_events_endpoint_streams_until_the_job_ends(appliance: Appliance) -> None:
    job_id = appliance.selftest(steps=4, delay_ms=30)
    with SSEReader(f"{appliance.url}/api/jobs/{job_id}/events") as reader:
        wait_until(reader.ended.is_set, timeout=10, what="the job stream to end")
    assert _statuses(reader.events, job_id)[-1] == "completed"
    assert all(e["payload"]["job_id"] == job_id for e in reader.events)
    # Finished job: the stream replays its history and ends; JSON for polling clients.
    with SSEReader(f"{appliance.url}/api/jobs/{job_id}/events") as replay:
        wait_until(replay.ended.is_set, timeout=30, what="the replay to end")
    assert replay.ids() == reader.ids()
    listed = appliance.get(f"/api/jobs/{job_id}/events", params={"format": "json"}).json()["data"]
    assert [e["id"] for e in listed] == reader.ids()
