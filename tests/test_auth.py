"""Access, against a real server: MISTUDIO_TOKEN (every /api call needs it however the path is spelled;
the UI's files stay public), and what keeps other sites out: host names, Origin, content types."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess

import httpx
import pytest

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


# -- the access decision is made on the path the router dispatches --------------------------------


def _raw(
    app, method: str, path: bytes, headers: dict[str, str] | None = None, body: bytes = b"", host: str | None = None
) -> tuple[int, dict[str, str], bytes]:
    """One request sent byte for byte (like ``curl --path-as-is``: nothing collapses ``//`` or decodes
    ``%2f``); returns after the body, or after the head for a stream."""
    lines = [
        method.encode() + b" " + path + b" HTTP/1.1",
        f"Host: {host or f'127.0.0.1:{app.port}'}".encode(),
        b"Connection: close",
    ]
    lines += [f"{k}: {v}".encode() for k, v in (headers or {}).items()]
    if body:
        lines.append(f"Content-Length: {len(body)}".encode())
    with socket.create_connection(("127.0.0.1", app.port), timeout=10) as sock:
        sock.sendall(b"\r\n".join(lines) + b"\r\n\r\n" + body)
        data = b""
        while b"\r\n\r\n" not in data and (chunk := sock.recv(65536)):
            data += chunk
        head, _, rest = data.partition(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        fields = dict(line.decode("latin-1").split(": ", 1) for line in head.split(b"\r\n")[1:])
        fields = {k.lower(): v for k, v in fields.items()}
        length = 0 if method == "HEAD" else int(fields.get("content-length", 0))
        while len(rest) < length and (chunk := sock.recv(65536)):
            rest += chunk
    return status, fields, rest[:length]


BYPASSES = (
    b"//api/jobs",
    b"///api/jobs",
    b"/%2fapi/jobs",
    b"/%2Fapi%2Fjobs",
    b"/api//jobs",
    b"//api//jobs/",
    b"/%2F%2Fapi/jobs",
)
UPLOAD = (
    b'--b0undary\r\nContent-Disposition: form-data; name="file"; filename="x.jsonl"\r\n\r\n'
    b'{"text": "planted"}\n\r\n--b0undary--\r\n'
)


def test_token_cannot_be_bypassed_by_slashes_or_encoding(make_appliance) -> None:
    app = make_appliance({"MISTUDIO_TOKEN": TOKEN})
    app.start_api()
    app.start_worker()
    json_type = {"Content-Type": "application/json"}
    for path in BYPASSES:
        for method in ("GET", "HEAD", "OPTIONS"):
            status, headers, body = _raw(app, method, path)
            assert status == 401, (method, path, status, body)
            assert headers.get("www-authenticate") == "Bearer"
        status, _, body = _raw(app, "POST", path + b"/selftest", json_type, b'{"steps": 1}')
        assert status == 401, (path, status, body)
        assert TOKEN not in body.decode()
    for prefix in (b"/", b"//", b"/%2f", b"/%2F"):
        # The event stream (would replay every stored event), an upload, a settings change.
        status, _, _ = _raw(app, "GET", prefix + b"api/events?last_event_id=0")
        assert status == 401, prefix
        status, _, _ = _raw(
            app,
            "POST",
            prefix + b"api/datasets/upload",
            {"Content-Type": "multipart/form-data; boundary=b0undary"},
            UPLOAD,
        )
        assert status == 401, prefix
        status, _, _ = _raw(app, "PUT", prefix + b"api/settings/labeling", json_type, b'{"provider": "local"}')
        assert status == 401, prefix
    for path in (b"/api", b"/api/", b"//api", b"/%2fapi%2f", b"/api/nope", b"//api/nope/"):
        assert _raw(app, "GET", path)[0] == 401, path
    # Nothing was created or changed by any of the attempts above.
    with app.client() as client:
        assert client.get("/api/jobs").json()["data"] == []
        assert client.get("/api/datasets").json()["data"] == []
        assert client.get("/api/settings/labeling").json()["data"]["provider"] == "none"
    # The UI and the API reference stay public, however their paths are spelled.
    for path in (b"/", b"//", b"/datasets", b"//assets/app-abc123.js", b"/schema", b"//schema/openapi.json"):
        assert _raw(app, "GET", path)[0] == 200, path
    # With the token, the doubled slash reaches the same endpoint as before.
    assert _raw(app, "GET", b"//api/jobs", {"Authorization": f"Bearer {TOKEN}"})[0] == 200


def test_a_route_outside_api_must_be_public_on_purpose() -> None:
    from litestar import Litestar, get

    from appliance.api.access import check_routes

    @get("/debug", sync_to_thread=False)
    def debug() -> str:
        return "internals"

    with pytest.raises(RuntimeError, match="PUBLIC_ROUTES"):
        check_routes(Litestar([debug]))


# -- cross-site requests: content types, Origin, Host ---------------------------------------------


def _job_count(app) -> int:
    return app.get("/api/jobs", params={"limit": 1}).json()["meta"]["pagination"]["total"]


def test_bodies_need_their_content_type(shared_appliance) -> None:
    app = shared_appliance
    before = _job_count(app)
    body = b'{"steps": 1, "delay_ms": 0}'
    with app.client() as client:
        # What a page on another site can send without a CORS preflight, and a body without a type.
        for content_type in (
            "text/plain",
            "text/plain;charset=UTF-8",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            None,
            "application/jsonp",
            "application/json-seq",
        ):
            headers = {"content-type": content_type} if content_type else {}
            response = client.post("/api/jobs/selftest", content=body, headers=headers)
            error = assert_error(response, 415, "UNSUPPORTED_MEDIA_TYPE")
            assert "application/json" in error["message"]
        assert_error(client.post("/api/jobs/selftest", data={"steps": "1"}), 415, "UNSUPPORTED_MEDIA_TYPE")
        assert_error(
            client.put(
                "/api/settings/labeling", content=b'{"provider": "local"}', headers={"content-type": "text/plain"}
            ),
            415,
            "UNSUPPORTED_MEDIA_TYPE",
        )
        # The file endpoints take multipart/form-data only.
        for path in ("/api/datasets/upload", "/api/training/import/upload"):
            assert_error(client.post(path, json={"path": "x"}), 415, "UNSUPPORTED_MEDIA_TYPE")
            assert_error(
                client.post(path, content=UPLOAD, headers={"content-type": "text/plain"}), 415, "UNSUPPORTED_MEDIA_TYPE"
            )
        assert _job_count(app) == before
        assert client.get("/api/settings/labeling").json()["data"]["provider"] == "none"
        # JSON with a charset, in any case, and body-less POSTs (curl -X POST) keep working.
        for content_type in ("application/json", "application/json; charset=utf-8", "Application/JSON"):
            response = client.post("/api/jobs/selftest", content=body, headers={"content-type": content_type})
            assert response.status_code == 202, (content_type, response.text)
        job_id = response.json()["data"]["job_id"]
        app.wait_status(job_id, "completed")
        assert_error(client.post(f"/api/jobs/{job_id}/cancel"), 409, "CONFLICT")
        multipart = {"content-type": "multipart/form-data; boundary=b0undary"}
        # Multipart reaches the file endpoints (this zip import then misses its model_id).
        assert_error(
            client.post("/api/training/import/upload", content=UPLOAD, headers=multipart), 400, "VALIDATION_ERROR"
        )
        assert client.post("/api/datasets/upload", content=UPLOAD, headers=multipart).status_code == 202


def test_state_changes_from_another_origin_are_refused(shared_appliance) -> None:
    app = shared_appliance
    before = _job_count(app)
    own = f"http://127.0.0.1:{app.port}"
    with app.client() as client:
        for origin in (
            "http://evil.example",
            "null",
            f"http://127.0.0.1:{app.port + 1}",
            f"http://localhost:{app.port}",
            f"ftp://127.0.0.1:{app.port}",
            f"{own}.evil.example",
        ):
            response = client.post("/api/jobs/selftest", json={"steps": 1}, headers={"Origin": origin})
            error = assert_error(response, 403, "FORBIDDEN")
            assert "origin" in error["message"].lower()
            assert_error(
                client.put("/api/settings/labeling", json={"provider": "local"}, headers={"Origin": origin}),
                403,
                "FORBIDDEN",
            )
            assert_error(client.delete("/api/datasets/ds_abcdefgh1234", headers={"Origin": origin}), 403, "FORBIDDEN")
            # Reading is not a state change (and without CORS headers the page cannot read the answer).
            assert client.get("/api/jobs", headers={"Origin": origin}).status_code == 200
        assert _job_count(app) == before
        assert client.get("/api/settings/labeling").json()["data"]["provider"] == "none"
        # The appliance's own origin (what its UI sends), and no Origin at all (curl).
        assert client.post("/api/jobs/selftest", json={"steps": 1}, headers={"Origin": own}).status_code == 202
        assert client.post("/api/jobs/selftest", json={"steps": 1}).status_code == 202
        status, _, _ = _raw(
            app,
            "POST",
            b"/api/jobs/selftest",
            {"Content-Type": "application/json", "Origin": f"http://LocalHost:{app.port}"},
            b'{"steps": 1}',
            host=f"localhost:{app.port}",
        )
        assert status == 202


def test_foreign_host_names_are_refused(shared_appliance) -> None:
    app = shared_appliance
    port = app.port
    for host in (
        "evil.example",
        f"evil.example:{port}",
        "127.0.0.1.evil.example",
        f"localhost.evil.example:{port}",
        "mistudio.local.evil.example",
    ):
        for path in (b"/api/jobs", b"/", b"/api/health"):
            status, _, body = _raw(app, "GET", path, host=host)
            assert status == 421, (host, path, status)
            error = json.loads(body)["error"]
            assert error["code"] == "MISDIRECTED_REQUEST" and "MISTUDIO_ALLOWED_HOSTS" in error["message"]
        status, _, _ = _raw(
            app, "POST", b"/api/jobs/selftest", {"Content-Type": "application/json"}, b'{"steps": 1}', host=host
        )
        assert status == 421
    hostname = socket.gethostname()
    for host in (
        f"127.0.0.1:{port}",
        "127.0.0.1",
        f"[::1]:{port}",
        "10.1.2.3",
        f"localhost:{port}",
        "LOCALHOST",
        hostname,
        f"{hostname}.local:{port}",
        f"{hostname.upper()}.LOCAL",
    ):
        assert _raw(app, "GET", b"/api/health/live", host=host)[0] == 200, host


def test_allowed_hosts_setting(make_appliance) -> None:
    app = make_appliance({"MISTUDIO_ALLOWED_HOSTS": "studio.lan, Lab-Box.example."})
    app.start_api()
    for host in ("studio.lan", f"studio.lan:{app.port}", "lab-box.example", f"localhost:{app.port}", "127.0.0.1"):
        assert _raw(app, "GET", b"/api/health/live", host=host)[0] == 200, host
    assert _raw(app, "GET", b"/api/health/live", host="evil.example")[0] == 421
    app.stop()
    anyone = make_appliance({"MISTUDIO_ALLOWED_HOSTS": "*"}, name="any")
    anyone.start_api()
    assert _raw(anyone, "GET", b"/api/health/live", host="evil.example")[0] == 200
    # Any host name, but still only the page's own origin may change state.
    status, _, _ = _raw(
        anyone,
        "POST",
        b"/api/jobs/selftest",
        {"Content-Type": "application/json", "Origin": "http://other.example"},
        b'{"steps": 1}',
        host="evil.example",
    )
    assert status == 403


def test_curl_keeps_working(shared_appliance) -> None:
    curl = shutil.which("curl")
    if curl is None:
        pytest.skip("curl is not installed")
    app = shared_appliance

    def run(*args: str) -> dict:
        out = subprocess.run([curl, "-s", *args], capture_output=True, text=True, timeout=30, check=True).stdout
        return json.loads(out)

    created = run(
        "-X",
        "POST",
        f"{app.url}/api/jobs/selftest",
        "-H",
        "content-type: application/json",
        "-d",
        '{"steps": 1, "delay_ms": 0}',
    )
    app.wait_status(created["data"]["job_id"], "completed")
    # curl -d without a type sends a form: refused with a message that says what to send.
    refused = run("-X", "POST", f"{app.url}/api/jobs/selftest", "-d", '{"steps": 1}')
    assert refused["error"]["code"] == "UNSUPPORTED_MEDIA_TYPE"
    assert "content-type: application/json" in refused["error"]["message"]
    assert run("--path-as-is", f"{app.url}//api/jobs/{created['data']['job_id']}")["data"]["status"] == "completed"
