"""MISTUDIO_TOKEN: every /api call needs the token; the UI's files stay public."""

from __future__ import annotations

import httpx

from tests.support import SSEReader
from tests.test_api_contract import assert_error

TOKEN = "s3cret-t0ken"


def test_token_required_for_api_but_not_ui(make_appliance) -> None:
    app = make_appliance({"MISTUDIO_TOKEN": TOKEN})
    app.start_api()
    app.start_worker()
    bare = httpx.Client(base_url=app.url, timeout=5)
    for path in ("/api/health", "/api/jobs", "/api/system/info", "/api/events", "/api/nope"):
        error = assert_error(bare.get(path), 401, "UNAUTHORIZED")
        assert TOKEN not in str(error)
    assert bare.get("/api/jobs", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert bare.post("/api/jobs/selftest", json={}).status_code == 401
    assert bare.get("/").status_code == 200
    assert bare.get("/datasets").status_code == 200
    assert bare.get("/assets/app-abc123.js").status_code == 200
    assert bare.get("/api/health", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    assert bare.get("/api/health", headers={"X-Mistudio-Token": TOKEN}).status_code == 200
    assert bare.get("/api/health", headers={"Cookie": f"mistudio_token={TOKEN}"}).status_code == 200
    # EventSource cannot send headers: the UI's cookie authorises the stream.
    with SSEReader(app.url + "/api/events", headers={"Cookie": f"mistudio_token={TOKEN}"}) as reader:
        job_id = app.selftest(steps=1, delay_ms=0)
        reader.wait_for(lambda events: any(e["payload"]["job_id"] == job_id for e in events))
    assert reader.status == 200
    bare.close()
