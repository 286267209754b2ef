"""Monitoring through the real API: this machine's /proc, and a simulated Jetson whose tegrastats is a
script printing real board output (acceptance: the API reports the board and streams its metrics)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from appliance.device.procfs import meminfo_kb
from tests.support import REPO, Appliance, SSEReader, wait_until
from tests.test_platform import make_jetson_root

FIXTURE = REPO / "tests/fixtures/tegrastats_samples.txt"
ORIN_LINE = (
    "RAM 2257/7620MB (lfb 5392x4MB) SWAP 0/3810MB (cached 0MB) CPU [12%@729,5%@729,off,off,3%@1510,"
    "0%@1510] EMC_FREQ 3%@2133 GR3D_FREQ 42%@[612,612] VIC_FREQ 115 APE 174 cpu@47.5C soc2@45.9C "
    "soc0@46.1C gpu@46.8C tj@47.5C soc1@45.2C VDD_IN 4852mW/4852mW VDD_CPU_GPU_CV 607mW/607mW "
    "VDD_SOC 1337mW/1337mW"
)


def _this_machine_kind() -> str:
    """What this (non-Jetson) machine is, from what the NVIDIA kernel driver lists and what torch sees,
    not from the platform detection under test (NVML, nvidia-smi)."""
    import torch

    gpus = Path("/proc/driver/nvidia/gpus")
    return "nvidia" if (gpus.is_dir() and any(gpus.iterdir())) or torch.cuda.is_available() else "cpu"


def metric_events(reader: SSEReader) -> list[dict]:
    return [e for e in reader.events if e["event"] == "system.metrics"]


def test_metrics_of_this_machine(make_appliance) -> None:
    app = make_appliance({"MISTUDIO_METRICS_INTERVAL_S": "0.5"})
    app.start_api()
    app.start_worker()
    with SSEReader(app.url + "/api/events?topics=system") as reader:
        reader.wait_for(lambda events: len(metric_events(reader)) >= 3, timeout=10)
    samples = [e["payload"]["data"] for e in metric_events(reader)]
    assert all("id" not in e for e in metric_events(reader))  # ephemeral: no SSE id
    assert [s["timestamp"] for s in samples] == sorted(s["timestamp"] for s in samples)
    last = samples[-1]
    assert last["source"] == "proc" and len(last["cpu"]) == os.cpu_count()
    assert last["ram_total_mb"] == pytest.approx(meminfo_kb()["MemTotal"] / 1024, abs=1)
    assert last["process_rss_mb"]["api"] > 10 and last["process_rss_mb"]["worker"] > 10
    body = app.get("/api/system/metrics").json()["data"]
    assert body["source"] == "proc" and body["interval_s"] == 0.5
    assert body["latest"]["timestamp"] >= last["timestamp"] and len(body["history"]) >= 1
    info = app.get("/api/system/info").json()["data"]
    assert info["platform_kind"] == _this_machine_kind()  # a desktop, with or without a GPU
    assert info["unified_memory"] is False and info["board"] is None
    assert info["memory_budget_mb"] == pytest.approx(info["total_memory_mb"] * 0.85, rel=1e-3)
    assert info["total_memory_source"] == "host" and info["total_memory_mb"] == info["host_memory_mb"]
    power = app.get("/api/system/power").json()["data"]
    assert power["available"] is False and "nvpmodel" in power["detail"]


def test_a_configured_total_is_what_the_system_info_shows(make_appliance) -> None:
    """MISTUDIO_MEMORY_TOTAL_MB simulates a smaller board: the info shows that total, says it is
    configured, and derives the same budget the worker's admission refuses jobs with; the host's own
    RAM stays readable under its own name."""
    app = make_appliance({"MISTUDIO_MEMORY_TOTAL_MB": "8192"})
    app.start_api()
    app.start_worker()
    info = app.get("/api/system/info").json()["data"]
    host_mb = meminfo_kb()["MemTotal"] / 1024
    assert (info["total_memory_mb"], info["total_memory_source"]) == (8192, "configured")
    assert info["host_memory_mb"] == pytest.approx(host_mb, abs=1)
    assert info["memory_budget_mb"] == pytest.approx(8192 * 0.85, abs=0.1)
    refused = app.post("/api/jobs/selftest", json={"steps": 1, "delay_ms": 0, "memory_mb": 7000})
    assert refused.status_code == 503, refused.text
    assert refused.json()["error"]["details"]["budget_mb"] == pytest.approx(info["memory_budget_mb"], abs=0.1)


def _fake_tegrastats(tmp_path: Path) -> tuple[Path, Path]:
    lines = tmp_path / "lines.txt"
    lines.write_text(ORIN_LINE + "\n")
    pidfile = tmp_path / "tegrastats.pid"
    script = tmp_path / "tegrastats"
    script.write_text(f"""#!/bin/sh
echo $$ > {pidfile}
while true; do
  while IFS= read -r line; do echo "$line"; sleep 0.2; done < {lines}
done
""")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return script, pidfile


def test_simulated_jetson_reports_board_and_streams_tegrastats(make_appliance, tmp_path: Path) -> None:
    root = make_jetson_root(tmp_path / "host")
    script, pidfile = _fake_tegrastats(tmp_path)
    app = make_appliance(
        {"MISTUDIO_HOST_ROOT": str(root), "MISTUDIO_TEGRASTATS": str(script), "MISTUDIO_METRICS_INTERVAL_S": "0.5"}
    )
    app.start_api()
    app.start_worker()
    info = app.get("/api/system/info").json()["data"]
    assert info["platform_kind"] == "jetson" and info["device_name"] == "NVIDIA Jetson Orin Nano Developer Kit"
    assert (info["soc"], info["l4t"], info["jetpack"], info["unified_memory"]) == ("Orin (T234)", "36.3.0", "6.0", True)
    assert not pidfile.exists()  # nobody listens yet: no tegrastats process
    with SSEReader(app.url + "/api/events?topics=system") as reader:
        reader.wait_for(lambda events: len(metric_events(reader)) >= 2, timeout=10)
        pid = int(pidfile.read_text())
        assert Path(f"/proc/{pid}").exists()
    sample = metric_events(reader)[-1]["payload"]["data"]
    assert sample["source"] == "tegrastats"
    assert (sample["ram_used_mb"], sample["ram_total_mb"]) == (2257, 7620)
    assert sample["gpu_load_pct"] == 42 and sample["gpu_freq_mhz"] == 612
    assert [c["online"] for c in sample["cpu"]] == [True, True, False, False, True, True]
    assert sample["temperatures_c"]["gpu"] == 46.8 and sample["temperatures_c"]["tj"] == 47.5
    rails = {r["name"]: r for r in sample["power"]}
    assert rails["VDD_IN"]["current_mw"] == 4852 and rails["VDD_SOC"]["average_mw"] == 1337
    assert sample["process_rss_mb"]["worker"] > 10
    # The last listener left: the tegrastats process is stopped (no cost when nobody looks).
    wait_until(
        lambda: not Path(f"/proc/{pid}").exists() or _is_zombie(pid),
        timeout=10,
        what="tegrastats to stop after the last listener left",
    )


def _is_zombie(pid: int) -> bool:
    try:
        return " Z " in Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True


def test_doctor_reports_checks(appliance: Appliance) -> None:
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "appliance", "doctor"], env=appliance.env, capture_output=True, text=True, timeout=180
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for name in ("python", "torch", "data dir", "disk space", "database", "port", "worker", "monitoring"):
        assert name in result.stdout
    assert f"running (pid {appliance.worker.pid})" in result.stdout
    assert "miStudio answers there" in result.stdout
