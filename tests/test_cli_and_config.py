"""The mistudio CLI and the MISTUDIO_* settings."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from appliance.config import ConfigError, load_settings
from tests.support import Appliance


def _cli(app: Appliance, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "appliance", *args], env=app.env, capture_output=True, text=True, timeout=60
    )


def test_status_and_jobs(appliance: Appliance) -> None:
    done = appliance.selftest(steps=1, delay_ms=0)
    appliance.wait_status(done, "completed")
    running = appliance.selftest(steps=1000, delay_ms=20)
    appliance.wait_status(running, "running")
    status = _cli(appliance, "status")
    assert status.returncode == 0, status.stderr
    assert f"up ({appliance.url})" in status.stdout
    assert f"running (pid {appliance.worker.pid}" in status.stdout
    assert running in status.stdout and "1 completed" in status.stdout
    jobs = _cli(appliance, "jobs")
    assert done in jobs.stdout and running in jobs.stdout and "completed" in jobs.stdout
    cancel = _cli(appliance, "jobs", "--cancel", running)
    assert cancel.returncode == 0 and "cancel requested" in cancel.stdout
    assert appliance.wait_status(running, "cancelled", timeout=60)
    assert _cli(appliance, "jobs", "--cancel", running).returncode == 1


def test_torch_threads_setting_sizes_torchs_pools_in_the_worker(make_appliance) -> None:
    """MISTUDIO_TORCH_THREADS=1 (torch's default is one thread per core: 1 differs from it on any
    machine with more than one core): the first job to load torch gets 1 intra-op thread (from the
    variables exported at start), and from the next job on both pools have 1."""
    assert (os.cpu_count() or 1) > 1, "a one-core machine cannot tell the setting from torch's default"
    app: Appliance = make_appliance({"MISTUDIO_TORCH_THREADS": "1"})
    app.start_api()
    app.start_worker()
    first = app.wait_status(app.selftest(steps=1, delay_ms=0, torch=True), "completed", "failed", timeout=120)
    assert first["result"]["torch_threads"] == 1, first
    second = app.wait_status(app.selftest(steps=1, delay_ms=0, torch=True), "completed", "failed", timeout=120)
    assert (second["result"]["torch_threads"], second["result"]["torch_interop_threads"]) == (1, 1), second
    assert "torch: 1 intra-op and 1 inter-op threads" in app.log("worker")


def test_settings_from_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MISTUDIO_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("MISTUDIO_PORT", "9123")
    monkeypatch.setenv("MISTUDIO_TOKEN", "abc")
    monkeypatch.setenv("MISTUDIO_MAX_MEMORY_FRACTION", "0.5")
    settings = load_settings()
    assert settings.data_dir == tmp_path and settings.port == 9123 and settings.token == "abc"
    assert settings.max_memory_fraction == 0.5 and settings.host == "0.0.0.0"
    assert settings.db_path == tmp_path / "mistudio.db" and settings.queue_path == tmp_path / "queue.db"


@pytest.mark.parametrize(
    "name, value", [("PORT", "eighty"), ("PORT", "70000"), ("MAX_MEMORY_FRACTION", "2"), ("LOG_LEVEL", "loud")]
)
def test_bad_settings_are_refused(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(f"MISTUDIO_{name}", value)
    with pytest.raises(ConfigError, match=f"MISTUDIO_{name}"):
        load_settings()
    result = subprocess.run(
        [sys.executable, "-m", "appliance", "status"],
        capture_output=True,
        text=True,
        env={**os.environ, f"MISTUDIO_{name}": value},
        timeout=30,
    )
    assert result.returncode == 2 and f"MISTUDIO_{name}" in result.stderr
