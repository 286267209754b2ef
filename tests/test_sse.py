"""The event stream: resume with Last-Event-ID, heartbeats, topic filters, shutdown."""

from __future__ import annotations

import signal
import sqlite3
import time

from tests.support import Appliance, SSEReader, job_finished, wait_until


def _stored_ids(app: Appliance, job_id: str) -> list[int]:
    conn = sqlite3.connect(app.data_dir / "mistudio.db")
    try:
        return [r[0] for r in conn.execute("SELECT id FROM events WHERE job_id = ? ORDER BY id", (job_id,))]
    finally:
        conn.close()


def test_reconnect_with_last_event_id_gets_every_event_once(appliance: Appliance) -> None:
    url = appliance.url + "/api/events?topics=job"
    first = SSEReader(url).__enter__()
    job_id = appliance.selftest(steps=40, delay_ms=40)
    first.wait_for(lambda events: sum(e["event"] == "job.progress" for e in events) >= 5)
    first.close()
    seen = list(first.events)
    time.sleep(0.5)  # events keep coming while the client is away
    with SSEReader(url, headers={"Last-Event-ID": str(seen[-1]["id"])}) as second:
        second.wait_for(job_finished(job_id))
    received = [e["id"] for e in seen + second.events if e["payload"]["job_id"] == job_id]
    assert received == _stored_ids(appliance, job_id)  # every event, exactly once, in order
    assert len(received) == len(set(received))
    assert second.events[0]["id"] > seen[-1]["id"]


def test_resume_from_query_parameter_for_curl(appliance: Appliance) -> None:
    job_id = appliance.selftest(steps=3, delay_ms=0)
    appliance.wait_status(job_id, "completed")
    ids = _stored_ids(appliance, job_id)
    with SSEReader(f"{appliance.url}/api/events?last_event_id={ids[1]}&topics=job:{job_id}") as reader:
        reader.wait_for(lambda events: len(events) >= len(ids) - 2)
        time.sleep(0.2)
    assert reader.ids() == ids[2:]


def test_heartbeat_and_retry(appliance: Appliance) -> None:
    with SSEReader(appliance.url + "/api/events") as reader:
        wait_until(lambda: "heartbeat" in reader.comments, timeout=30, what="a heartbeat comment")
    assert reader.retry == 3000


def test_topic_filter(appliance: Appliance) -> None:
    wanted = appliance.selftest(steps=2, delay_ms=300)
    with SSEReader(f"{appliance.url}/api/events?topics=job:{wanted}") as reader:
        other = appliance.selftest(steps=2, delay_ms=0)
        reader.wait_for(job_finished(wanted))
    assert appliance.wait_status(other, "completed")
    assert reader.events and all(e["payload"]["topic"] == f"job:{wanted}" for e in reader.events)


def test_api_stops_promptly_with_clients_connected(appliance: Appliance) -> None:
    readers = [SSEReader(appliance.url + "/api/events").__enter__() for _ in range(3)]
    try:
        appliance.stop_proc(appliance.api, signal.SIGTERM, timeout=60)
        # uvicorn re-raises the signal after a clean shutdown; systemd counts SIGTERM as a clean stop.
        assert appliance.api.returncode in (0, -signal.SIGTERM)
        log = appliance.log("serve")
        assert "Application shutdown complete" in log
        # The streams were ended by the appliance, not cut by uvicorn's graceful-shutdown timeout (which
        # would also stop the process, only later): no cancelled tasks, every client saw a clean end.
        assert "timeout graceful shutdown exceeded" not in log, log
        for reader in readers:
            wait_until(reader.ended.is_set, timeout=30, what="the stream to close")
            assert reader.error is None, reader.error
    finally:
        for reader in readers:
            reader.close()
