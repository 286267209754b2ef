"""A write-only secret never leaves the worker, even when an upstream quotes it back: an
OpenAI-compatible labelling endpoint that answers 401 "Incorrect API key provided: Bearer sk-..."
fails the job, and the key is in none of the job, its events (stored or replayed over SSE) or the
worker's log."""

from __future__ import annotations

import json
import sqlite3
import time

from appliance.data import jobs as sql
from appliance.data.redact import PREFIX_LEN
from tests.support import SSEReader, job_finished, json_post_server

KEY = "sk-test-Zq81vW0rT5yLm3Kp9XcB2nHd"


def _rejecting_server():
    """Answers every request as OpenAI does for a wrong key: 401, quoting the Authorization header."""
    return json_post_server(
        lambda path, headers, body: (
            401,
            {
                "error": {
                    "message": f"Incorrect API key provided: {headers.get('Authorization', '')}",
                    "code": "invalid_api_key",
                }
            },
        )
    )


def test_a_key_quoted_back_by_the_labelling_endpoint_is_redacted_everywhere(make_appliance) -> None:
    app = make_appliance()
    app.start_api()
    server = _rejecting_server()
    try:
        settings = {
            "provider": "openai",
            "endpoint": f"http://127.0.0.1:{server.server_port}/v1",
            "model": "labeller-1",
            "examples": 3,
            "timeout_s": 10.0,
        }
        response = app.client().put("/api/settings/labeling", json={**settings, "api_key": KEY})
        assert response.status_code == 200 and KEY not in response.text
        # The labelling job as POST .../features/label queues it (that endpoint needs a trained SAE's
        # features; the job itself needs only its prompts): written as the API writes it, and sent to
        # the worker by its start-up reconciliation.
        conn = sqlite3.connect(app.data_dir / "mistudio.db")
        job_id = "job_labelredact1"
        with conn:
            conn.execute(
                *sql.insert_job(
                    job_id,
                    "features.label",
                    "interactive",
                    {"training_id": "tr_none", "settings": settings, "prompts": [[0, "Contexts: «def» foo"]]},
                    None,
                    time.time(),
                )
            )
        conn.close()
        app.start_worker()
        job = app.wait_status(job_id, "completed", "failed", timeout=60)
    finally:
        server.shutdown()

    assert job["status"] == "failed" and job["error"]["code"] == "UPSTREAM_UNAVAILABLE", job
    # The upstream's words still explain the failure, without the key.
    assert "401" in job["error"]["message"] and "[redacted]" in job["error"]["message"], job["error"]
    leaked = (KEY, KEY[: PREFIX_LEN + 4])  # the key, or enough of it to matter
    answer = app.get(f"/api/jobs/{job_id}").text
    assert not any(k in answer for k in leaked), answer

    headers = {**app.auth_headers(), "Last-Event-ID": "0"}
    with SSEReader(f"{app.url}/api/events?topics=job:{job_id}", headers=headers) as reader:
        reader.wait_for(job_finished(job_id))
    replayed = json.dumps([event["payload"] for event in reader.events])
    assert "[redacted]" in replayed and not any(k in replayed for k in leaked), replayed

    conn = sqlite3.connect(app.data_dir / "mistudio.db")
    stored = "\n".join(row[0] for row in conn.execute("SELECT data FROM events"))
    rows = "\n".join(str(row) for row in conn.execute("SELECT * FROM jobs"))
    conn.close()
    assert not any(k in stored or k in rows for k in leaked)

    log = (app.logs / "worker.log").read_text(errors="replace")
    assert f"job {job_id} failed" in log and "[redacted]" in log, log[-3000:]
    assert not any(k in log for k in leaked), log[-3000:]
