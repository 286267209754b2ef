"""The API's contract against a real server: envelope, errors for bad input, health, UI serving."""

from __future__ import annotations

import socket

import httpx
import pytest

from tests.support import Appliance

ERROR_KEYS = {"code", "message", "details", "retryable", "timestamp"}


def assert_error(response: httpx.Response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == ERROR_KEYS, body
    assert body["error"]["code"] == code, body
    assert body["error"]["message"]
    assert "Traceback" not in response.text and 'File "' not in response.text
    return body["error"]


def raw_request(app: Appliance, request: bytes) -> tuple[int, bytes]:
    """Send bytes as they are (httpx normalises paths such as /../)."""
    with socket.create_connection(("127.0.0.1", app.port), timeout=5) as sock:
        sock.sendall(request)
        chunks = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    raw = b"".join(chunks)
    status = int(raw.split(b" ", 2)[1])
    return status, raw.split(b"\r\n\r\n", 1)[1] if b"\r\n\r\n" in raw else b""


def test_health_endpoints(shared_appliance: Appliance) -> None:
    health = shared_appliance.get("/api/health").json()
    assert health["data"]["status"] == "healthy", health
    assert set(health["data"]["components"]) == {"database", "worker", "disk"}
    assert health["meta"]["request_id"].startswith("req_")
    assert shared_appliance.get("/api/health/live").json()["data"]["status"] == "ok"
    assert shared_appliance.get("/api/health/ready").status_code == 200


def test_system_info_reports_worker_versions(shared_appliance: Appliance) -> None:
    info = shared_appliance.get("/api/system/info").json()["data"]
    assert info["version"] and info["python"] and info["platform"]
    assert info["device_name"]
    worker = info["worker"]
    assert worker is not None and worker["alive"] is True
    assert worker["torch"] and worker["torch"].startswith("2.")
    assert worker["pid"] == shared_appliance.worker.pid


def test_openapi_schema_lists_endpoints(shared_appliance: Appliance) -> None:
    schema = shared_appliance.get("/schema/openapi.json").json()
    for path in (
        "/api/jobs",
        "/api/jobs/{job_id}",
        "/api/jobs/{job_id}/cancel",
        "/api/events",
        "/api/health",
        "/api/system/info",
        "/api/jobs/selftest",
    ):
        assert path in schema["paths"], path


def test_job_list_pagination(shared_appliance: Appliance) -> None:
    ids = [shared_appliance.selftest(steps=1, delay_ms=0) for _ in range(3)]
    for job_id in ids:
        shared_appliance.wait_status(job_id, "completed")
    page = shared_appliance.get("/api/jobs", params={"limit": 2, "page": 1}).json()
    assert len(page["data"]) == 2
    pagination = page["meta"]["pagination"]
    assert pagination["total"] >= 3 and pagination["has_next"] is True and pagination["has_prev"] is False
    completed = shared_appliance.get("/api/jobs", params={"status": "completed", "limit": 200}).json()["data"]
    assert set(ids) <= {job["id"] for job in completed}
    assert all(job["status"] == "completed" for job in completed)


@pytest.mark.parametrize(
    "body, headers",
    [
        (b"{not json", {"content-type": "application/json"}),
        (b'{"steps": "ten"}', {"content-type": "application/json"}),
        (b'{"steps": 0}', {"content-type": "application/json"}),
        (b'{"steps": 5, "unknown_field": 1}', {"content-type": "application/json"}),
        (b"[1, 2, 3]", {"content-type": "application/json"}),
        (b'{"lane": "fast"}', {"content-type": "application/json"}),
    ],
)
def test_bad_bodies_get_validation_errors(shared_appliance: Appliance, body: bytes, headers: dict) -> None:
    response = shared_appliance.post("/api/jobs/selftest", content=body, headers=headers)
    assert_error(response, 400, "VALIDATION_ERROR")


def test_validation_error_names_the_field(shared_appliance: Appliance) -> None:
    error = assert_error(shared_appliance.post("/api/jobs/selftest", json={"delay_ms": -5}), 400, "VALIDATION_ERROR")
    assert "delay_ms" in error["message"] or "delay_ms" in str(error["details"])


@pytest.mark.parametrize(
    "path, body, key",
    [
        ("/api/jobs/selftest", {"steps": "5"}, "steps"),
        ("/api/jobs/selftest", {"lane": "heavy", "delay_ms": "0"}, "delay_ms"),
        (
            "/api/training/start",
            {
                "model_id": "m_abcdefgh",
                "dataset_id": "ds_abcdefgh",
                "layer": 0,
                "hyperparameters": {"total_steps": "100"},
            },
            "hyperparameters.total_steps",
        ),
        ("/api/training/start", {"model_id": "m_abcdefgh", "dataset_id": "ds_abcdefgh", "layer": "0"}, "layer"),
    ],
)
def test_body_values_are_not_coerced(shared_appliance: Appliance, path: str, body: dict, key: str) -> None:
    # A query string is all text, so "5" must do there; in JSON a quoted number is a wrong type.
    error = assert_error(shared_appliance.post(path, json=body), 400, "VALIDATION_ERROR")
    assert error["details"]["errors"][0]["key"] == key, error


def test_deeply_nested_body_is_a_validation_error(shared_appliance: Appliance) -> None:
    for body in (b"[" * 100_000, b'{"steps": ' + b"[" * 100_000, b"[" * 100_000 + b"]" * 100_000):
        response = shared_appliance.post(
            "/api/jobs/selftest", content=body, headers={"content-type": "application/json"}
        )
        assert_error(response, 400, "VALIDATION_ERROR")


@pytest.mark.parametrize("endpoint", ["/api/models/import", "/api/datasets/import"])
def test_import_path_too_long_for_the_file_system(shared_appliance: Appliance, endpoint: str) -> None:
    for path in ("a" * 1000, "x/" + "b" * 256 + "/c"):
        error = assert_error(shared_appliance.post(endpoint, json={"path": path}), 400, "VALIDATION_ERROR")
        assert error["details"]["field"] == "path", error


def test_bad_query_parameters(shared_appliance: Appliance) -> None:
    assert_error(shared_appliance.get("/api/jobs", params={"page": "abc"}), 400, "VALIDATION_ERROR")
    assert_error(shared_appliance.get("/api/jobs", params={"limit": 100000}), 400, "VALIDATION_ERROR")
    assert_error(shared_appliance.get("/api/jobs", params={"status": "exploded"}), 400, "VALIDATION_ERROR")
    assert_error(shared_appliance.get("/api/events", headers={"Last-Event-ID": "yesterday"}), 400, "VALIDATION_ERROR")


def test_unknown_and_malformed_ids(shared_appliance: Appliance) -> None:
    assert_error(shared_appliance.get("/api/jobs/job_doesnotexist"), 404, "NOT_FOUND")
    assert_error(shared_appliance.post("/api/jobs/job_doesnotexist/cancel"), 404, "NOT_FOUND")
    assert_error(shared_appliance.get("/api/jobs/job_doesnotexist/events"), 404, "NOT_FOUND")
    for bad in ("..%2F..%2Fetc%2Fpasswd", "job_..%2F..%2Fmistudio.db", "ds_abcdefgh", "job_x", "%00"):
        response = shared_appliance.get(f"/api/jobs/{bad}")
        assert response.status_code in (400, 404), (bad, response.text)
        assert_error(response, response.status_code, "VALIDATION_ERROR" if response.status_code == 400 else "NOT_FOUND")


def test_path_traversal_never_reads_outside(shared_appliance: Appliance) -> None:
    for path in (
        b"/../../../../etc/passwd",
        b"/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        b"/assets/../../../etc/passwd",
        b"/assets/..%2f..%2f..%2fetc%2fpasswd",
        b"/api/../../etc/passwd",
        b"/..%5c..%5cetc%5cpasswd",
    ):
        status, body = raw_request(
            shared_appliance, b"GET " + path + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        )
        assert b"root:" not in body, path
        assert status < 500, (path, status)


def test_oversized_body(shared_appliance: Appliance) -> None:
    big = b'{"steps": 1, "pad": "' + b"x" * (11 * 1024 * 1024) + b'"}'
    response = shared_appliance.post("/api/jobs/selftest", content=big, headers={"content-type": "application/json"})
    assert_error(response, 413, "PAYLOAD_TOO_LARGE")


def test_method_not_allowed_and_unknown_api_path(shared_appliance: Appliance) -> None:
    with shared_appliance.client() as client:
        error = assert_error(client.delete("/api/jobs"), 405, "METHOD_NOT_ALLOWED")
        assert "DELETE" in error["message"]
        assert_error(client.put("/api/health"), 405, "METHOD_NOT_ALLOWED")
        assert_error(client.get("/api/no/such/thing"), 404, "NOT_FOUND")
        assert_error(client.get("/api"), 404, "NOT_FOUND")


def test_cancel_finished_job_conflicts(shared_appliance: Appliance) -> None:
    job_id = shared_appliance.selftest(steps=1, delay_ms=0)
    shared_appliance.wait_status(job_id, "completed")
    assert_error(shared_appliance.post(f"/api/jobs/{job_id}/cancel"), 409, "CONFLICT")


def test_failing_job_reports_its_error(shared_appliance: Appliance) -> None:
    job_id = shared_appliance.selftest(steps=5, delay_ms=10, fail_at=3)
    job = shared_appliance.wait_status(job_id, "failed")
    assert job["error"]["code"] == "JOB_FAILED"
    assert "step 3" in job["error"]["message"]
    assert job["progress"] == pytest.approx(0.4)


def test_ui_is_served_with_spa_fallback(shared_appliance: Appliance) -> None:
    with shared_appliance.client() as client:
        index = client.get("/")
        assert index.status_code == 200 and "MechInterp Studio" in index.text
        assert index.headers["content-type"].startswith("text/html")
        for route in ("/datasets", "/training/tr_abcdefgh", "/features/some/deep/route"):
            reloaded = client.get(route)
            assert reloaded.status_code == 200 and reloaded.text == index.text, route
        asset = client.get("/assets/app-abc123.js")
        assert asset.status_code == 200 and "console.log" in asset.text
        assert (
            client.get("/assets/app-abc123.js", headers={"accept-encoding": "gzip"}).headers.get("content-encoding")
            == "gzip"
        )
        assert_error(client.get("/assets/missing-123.js"), 404, "NOT_FOUND")
        # HEAD is GET without the body (RFC 9110 9.3.2): the same status and headers, nothing else.
        head = client.head("/")
        assert head.status_code == 200 and head.headers["content-type"] == index.headers["content-type"]
        assert head.content == b""
