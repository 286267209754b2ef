"""Creating work is all or nothing, against a real API, worker and SQLite file: concurrent requests for a
singleton (the demo model or dataset) make exactly one, and on a full data disk a job-creating request or
an upload answers INSUFFICIENT_STORAGE and leaves no row, no queued task and no file behind."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from pathlib import Path

import httpx
import pytest

from tests.support import Appliance
from tests.test_api_contract import assert_error

CONCURRENT = 8


@pytest.mark.parametrize(
    "path,listing,id_key",
    [("/api/models/demo", "/api/models", "model_id"), ("/api/datasets/demo", "/api/datasets", "dataset_id")],
)
def test_concurrent_demo_requests_create_exactly_one(make_appliance, path: str, listing: str, id_key: str) -> None:
    app: Appliance = make_appliance()
    app.start_api()  # no worker: the rows stay as created, which is all this test reads
    barrier = threading.Barrier(CONCURRENT)

    def post(_: int) -> httpx.Response:
        with app.client() as client:
            client.get("/api/health/live")  # connect first, so the POSTs leave together
            barrier.wait()
            return client.post(path)

    with ThreadPoolExecutor(CONCURRENT) as pool:
        responses = list(pool.map(post, range(CONCURRENT)))

    demos = [row for row in app.get(listing).json()["data"] if row["source"] == "demo"]
    assert len(demos) == 1, demos
    accepted = [r for r in responses if r.status_code == 202]
    assert len(accepted) == 1, [r.text for r in responses]
    assert accepted[0].json()["data"]["job_id"] == demos[0]["job_id"]
    for response in responses:
        if response is not accepted[0]:  # the others are told which one exists
            assert assert_error(response, 409, "CONFLICT")["details"][id_key] == demos[0]["id"]
    jobs = app.get("/api/jobs").json()["data"]
    assert [job["id"] for job in jobs] == [demos[0]["job_id"]]


# -- a full data disk -----------------------------------------------------------------------------

DISK_MB = 40


@pytest.fixture
def small_disk_app(make_appliance) -> Iterator[Appliance]:
    """An appliance whose data dir is a 40 MB tmpfs; MISTUDIO_DISK_RESERVE_MB=0 so the writes themselves
    meet the full disk (the reserve is the first line of defence, tested with uploads below)."""
    app: Appliance = make_appliance({"MISTUDIO_DISK_RESERVE_MB": "0"})
    app.data_dir.mkdir(parents=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={DISK_MB}m", "tmpfs", str(app.data_dir)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs to simulate a small disk (needs root): {mounted.stderr.strip()}")
    try:
        yield app
    finally:
        for proc in (app.api, app.worker):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
        subprocess.run(["umount", str(app.data_dir)], check=False)


def _checkpoint_wal(db: Path, mode: str) -> None:
    """Checkpoint a database's write-ahead log. TRUNCATE empties it, so that its next commit must take new
    blocks on the disk (a WAL reused from its start would not, and the full disk would go unnoticed);
    RESTART makes its next commits reuse it from the start: they need no new blocks, and succeed on a
    full disk."""
    conn = sqlite3.connect(db, timeout=10)
    try:
        busy, _, _ = conn.execute(f"PRAGMA wal_checkpoint({mode})").fetchone()
        assert busy == 0, f"could not checkpoint {db}"
    finally:
        conn.close()


def _fill(folder: Path, leave_bytes: int = 0) -> Path:
    """Fill the filesystem of ``folder`` until only ``leave_bytes`` (or nothing) is free."""
    filler = folder / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for chunk in (1 << 20, 1 << 12):
            while shutil.disk_usage(folder).free - leave_bytes >= chunk:
                try:
                    os.write(fd, b"\0" * chunk)
                except OSError:
                    break
        if leave_bytes == 0:
            with suppress(OSError):
                while os.write(fd, b"\0" * 512):
                    pass
    finally:
        os.close(fd)
    return filler


def _rows(app: Appliance, query: str) -> list[tuple]:
    conn = sqlite3.connect(app.data_dir / "mistudio.db", timeout=10)
    try:
        return conn.execute(query).fetchall()
    finally:
        conn.close()


# Which database meets the full disk. "queue": the job table still has room in its log and only sending
# the job's task fails (a refused job used to run minutes later). "jobs": the task is sent, and the job's
# COMMIT fails (the worker then gets a task for a job that does not exist, and must drop it).
@pytest.mark.parametrize("full", ["queue", "jobs"])
def test_job_creation_on_a_full_disk_is_refused_whole_and_nothing_runs_later(
    small_disk_app: Appliance, full: str
) -> None:
    app = small_disk_app
    app.start_api()
    app.start_worker()
    app.wait_status(app.selftest(steps=1, delay_ms=0), "completed")
    baseline = _rows(app, "SELECT id FROM jobs")
    _checkpoint_wal(app.data_dir / "mistudio.db", "TRUNCATE" if full == "jobs" else "RESTART")
    _checkpoint_wal(app.data_dir / "queue.db", "TRUNCATE" if full == "queue" else "RESTART")
    filler = _fill(app.data_dir)

    # A job with a resource row (the demo model) and a job on its own: 507 in the envelope, nothing kept.
    body = assert_error(app.post("/api/models/demo"), 507, "INSUFFICIENT_STORAGE")
    assert body["retryable"] is True
    assert_error(app.post("/api/jobs/selftest", json={"steps": 1, "delay_ms": 0}), 507, "INSUFFICIENT_STORAGE")
    # A Hub download's token is stored for the worker before its job; a job never created leaves none.
    assert_error(
        app.post("/api/models/download", json={"repo_id": "org/tiny", "hf_token": "hf_Xy12secretToken"}),
        507,
        "INSUFFICIENT_STORAGE",
    )
    assert _rows(app, "SELECT id FROM jobs") == baseline
    assert _rows(app, "SELECT id FROM models") == []
    assert not (app.data_dir / "secrets").exists() or list((app.data_dir / "secrets").iterdir()) == []

    # Space comes back; a restarted worker (which re-sends queued jobs that lost their task) runs nothing
    # of the refused requests: a job created now is the only new one.
    filler.unlink()
    app.worker.kill()
    app.worker.wait()
    app.start_worker()
    fresh = app.selftest(steps=1, delay_ms=0)
    app.wait_status(fresh, "completed")
    assert sorted(_rows(app, "SELECT id FROM jobs")) == sorted([*baseline, (fresh,)])
    assert _rows(app, "SELECT id FROM models") == []
    # ... and the demo model, refused before, can be registered now.
    response = app.post("/api/models/demo")
    assert response.status_code == 202, response.text
    assert (
        app.wait_status(response.json()["data"]["job_id"], "completed", "failed", timeout=60)["status"] == "completed"
    )


def test_uploads_on_a_full_disk_answer_insufficient_storage_and_leave_nothing(small_disk_app: Appliance) -> None:
    app = small_disk_app
    app.start_api()
    _fill(app.data_dir, leave_bytes=3 << 20)
    uploads = app.data_dir / "uploads"
    content = b'{"text": "a line of the dataset"}\n' * ((8 << 20) // 34)  # 8 MB: more than is free

    # Announced (Content-Length): refused before a byte is written.
    response = app.post("/api/datasets/upload", files={"file": ("big.jsonl", content)})
    assert assert_error(response, 507, "INSUFFICIENT_STORAGE")["retryable"] is True

    # Chunked (no Content-Length): refused while streaming, the partial file removed.
    def chunked() -> Iterator[bytes]:
        yield b'--xyz\r\nContent-Disposition: form-data; name="file"; filename="big.jsonl"\r\n\r\n'
        for start in range(0, len(content), 256 << 10):
            yield content[start : start + (256 << 10)]
        yield b"\r\n--xyz--\r\n"

    with httpx.Client(base_url=app.url, timeout=30) as client:
        response = client.post(
            "/api/datasets/upload", content=chunked(), headers={"content-type": "multipart/form-data; boundary=xyz"}
        )
    assert_error(response, 507, "INSUFFICIENT_STORAGE")
    assert not uploads.exists() or list(uploads.iterdir()) == []
    assert _rows(app, "SELECT id FROM datasets") == [] and _rows(app, "SELECT id FROM jobs") == []
    assert "Traceback" not in app.log("serve")
