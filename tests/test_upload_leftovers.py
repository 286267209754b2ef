"""An upload cut short leaves nothing behind, against the real API: one whose client disconnects is
removed with one log line (no stack trace), and one cut short by a killed API is swept at the next start,
while the upload a queued import job still reads is kept."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tests.support import Appliance, wait_until

BOUNDARY = b"xyz"
PART_HEAD = b'--xyz\r\nContent-Disposition: form-data; name="file"; filename="big.jsonl"\r\n\r\n'
ANNOUNCED = 8 << 20  # the file part the request announces
SENT = 2 << 20  # what is sent of it before the connection is cut


def _start_upload(app: Appliance, path: str) -> socket.socket:
    """Send the head of an upload and part of its file, and leave the request waiting for the rest."""
    length = len(PART_HEAD) + ANNOUNCED + len(b"\r\n--xyz--\r\n")
    sock = socket.create_connection(("127.0.0.1", app.port))
    sock.sendall(
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{app.port}\r\n"
        f"Content-Type: multipart/form-data; boundary={BOUNDARY.decode()}\r\n"
        f"Content-Length: {length}\r\n\r\n".encode()
        + PART_HEAD
        + b'{"text": "x"}\n' * (SENT // 14)
    )
    return sock


def _partial(app: Appliance, name: str) -> Path | None:
    """The upload file being written, once it holds data."""
    uploads = app.data_dir / "uploads"
    found = [p for p in uploads.glob(f"*/{name}") if p.stat().st_size > 0] if uploads.is_dir() else []
    return found[0] if found else None


def test_an_upload_cut_short_by_a_killed_api_is_swept_at_start(make_appliance) -> None:
    app: Appliance = make_appliance()
    app.start_api()  # no worker: the complete upload's import job stays queued, and its file must stay
    response = app.post("/api/datasets/upload", files={"file": ("kept.jsonl", b'{"text": "kept"}\n')})
    assert response.status_code == 202, response.text
    kept = app.data_dir / "uploads" / app.get("/api/datasets").json()["data"][0]["id"]
    assert (kept / "kept.jsonl").is_file()

    sock = _start_upload(app, "/api/datasets/upload")
    partial = wait_until(lambda: _partial(app, "upload"), what="the partial upload on disk")
    app.api.kill()
    app.api.wait()
    sock.close()
    assert partial.exists()  # what a killed API leaves

    app.start_api()
    assert not partial.parent.exists()
    assert (kept / "kept.jsonl").is_file()
    assert sorted(p.name for p in (app.data_dir / "uploads").iterdir()) == [kept.name]
    assert "removed" in app.log("serve") and partial.parent.name in app.log("serve")


@pytest.mark.parametrize("path,name", [("/api/datasets/upload", "upload"), ("/api/training/import/upload", "sae.zip")])
def test_a_client_that_disconnects_mid_upload_leaves_no_file_and_no_traceback(
    make_appliance, path: str, name: str
) -> None:
    app: Appliance = make_appliance()
    app.start_api()
    sock = _start_upload(app, path)
    partial = wait_until(lambda: _partial(app, name), what="the partial upload on disk")
    sock.close()

    wait_until(lambda: not partial.parent.exists(), what="the partial upload to be removed")
    wait_until(lambda: "client disconnected" in app.log("serve"), what="the disconnect in the API log")
    log = app.log("serve")
    assert "Traceback" not in log and "ERROR" not in log, log
    assert app.get("/api/health/live").status_code == 200
