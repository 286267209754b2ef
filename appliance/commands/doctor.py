"""``mistudio doctor``: checks an install and says what to fix."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from appliance.config import Settings
from appliance.device.platform import detect

OK, WARN, FAIL = "ok", "warn", "FAIL"


@dataclass
class Check:
    name: str
    status: str
    detail: str
    fix: str = ""


def _python() -> Check:
    version = ".".join(map(str, sys.version_info[:3]))
    if sys.version_info < (3, 10):
        return Check("python", FAIL, version, "miStudio needs Python >= 3.10: re-run ./install.sh --python python3.10")
    return Check("python", OK, f"{version} ({sys.executable})")


def _torch(settings: Settings) -> Check:
    # A subprocess: importing torch here would cost the doctor 2 s and 240 MB for one line of output.
    code = (
        "import torch, json; print(json.dumps({'v': torch.__version__, 'cuda': torch.cuda.is_available(),"
        " 'dev': torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}))"
    )
    try:
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        return Check("torch", FAIL, "importing torch took over 2 minutes", "check the install: ./install.sh")
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["import failed"])[-1]
        return Check("torch", FAIL, last, "install it: ./install.sh (or --torch-index URL on a Jetson)")
    import json

    info = json.loads(result.stdout.strip().splitlines()[-1])
    platform = detect(settings.host_root)
    if platform.cuda_available and not info["cuda"]:
        return Check(
            "torch",
            WARN,
            f"torch {info['v']} without CUDA, but this device has a GPU",
            "install a CUDA build: ./install.sh --cuda (x86) or JetPack's torch (Jetson)",
        )
    return Check("torch", OK, f"torch {info['v']}, CUDA: {info['dev'] or 'no'}")


def _data_dir(settings: Settings) -> list[Check]:
    path = settings.data_dir
    checks = []
    if not path.exists():
        checks.append(Check("data dir", WARN, f"{path} does not exist yet", "it is created on first start"))
        path = next((p for p in path.parents if p.exists()), Path("/"))
    elif not os.access(path, os.W_OK):
        checks.append(
            Check(
                "data dir",
                FAIL,
                f"{path} is not writable by {os.getenv('USER', 'this user')}",
                f"fix the owner: sudo chown -R mistudio:mistudio {path}",
            )
        )
    else:
        checks.append(Check("data dir", OK, str(path)))
    free_gb = shutil.disk_usage(path).free / 1e9
    status = FAIL if free_gb < 1 else WARN if free_gb < 10 else OK
    checks.append(
        Check(
            "disk space",
            status,
            f"{free_gb:.1f} GB free",
            "" if status == OK else "free space: models and activations need several GB",
        )
    )
    return checks


def _database(settings: Settings) -> Check:
    from appliance.data.migrate import latest_version, schema_version

    if not settings.db_path.exists():
        return Check("database", WARN, "not created yet", "start the appliance once: mistudio up")
    version = schema_version(settings.db_path)
    if version != latest_version():
        return Check(
            "database", WARN, f"schema {version}, code expects {latest_version()}", "it is migrated on the next start"
        )
    return Check("database", OK, f"schema {version}")


def _port(settings: Settings) -> Check:
    with socket.socket() as sock:
        sock.settimeout(1)
        in_use = sock.connect_ex(("127.0.0.1", settings.port)) == 0
    if not in_use:
        return Check("port", OK, f"{settings.port} is free")
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{settings.port}/api/health/live", timeout=2):
            return Check("port", OK, f"{settings.port}: miStudio answers there")
    except Exception as exc:  # noqa: BLE001
        if "401" in str(exc):
            return Check("port", OK, f"{settings.port}: miStudio answers there (token required)")
        return Check(
            "port",
            FAIL,
            f"{settings.port} is used by another program",
            "stop it, or choose another port: MISTUDIO_PORT=8080",
        )


def _worker(settings: Settings) -> Check:
    if not settings.db_path.exists():
        return Check("worker", WARN, "never started", "mistudio up (or systemctl start mistudio.target)")
    from appliance.data import workers as worker_sql
    from appliance.data.database import Database

    row = Database(settings.db_path).one(worker_sql.latest())
    if row is None:
        return Check("worker", WARN, "never started", "mistudio up (or systemctl start mistudio.target)")
    age = time.time() - row["heartbeat_at"]
    if row["stopped_at"] is None and age <= settings.worker_stale_s:
        return Check("worker", OK, f"running (pid {row['pid']})")
    return Check(
        "worker",
        WARN,
        f"not running (last seen {age:.0f} s ago)",
        "start it: mistudio worker (or systemctl start mistudio-worker)",
    )


def _systemd() -> Check:
    if not Path("/run/systemd/system").exists():
        return Check("systemd", OK, "not booted with systemd: run `mistudio up` yourself")
    unit = Path("/etc/systemd/system/mistudio.target")
    if not unit.exists():
        return Check("systemd", WARN, "units not installed", "sudo ./install.sh --system")
    state = subprocess.run(
        ["systemctl", "is-enabled", "mistudio.target"], capture_output=True, text=True
    ).stdout.strip()
    return Check(
        "systemd",
        OK if state == "enabled" else WARN,
        f"mistudio.target {state or 'unknown'}",
        "" if state == "enabled" else "sudo systemctl enable --now mistudio.target",
    )


def _monitoring(settings: Settings) -> Check:
    platform = detect(settings.host_root)
    if platform.kind != "jetson":
        nvml = " + NVML" if platform.kind == "nvidia" else ""
        return Check("monitoring", OK, f"{platform.kind}: /proc and sysfs{nvml}")
    if Path("/run/jtop.sock").exists():
        return Check("monitoring", OK, f"{platform.board}: jtop service")
    if settings.tegrastats_path or shutil.which("tegrastats"):
        return Check("monitoring", OK, f"{platform.board}: tegrastats (install jetson-stats for jtop)")
    return Check(
        "monitoring",
        WARN,
        f"{platform.board}: neither jtop nor tegrastats found",
        "install nvidia-l4t-tools (tegrastats) or jetson-stats (jtop)",
    )


def run_doctor(settings: Settings, out: Callable[[str], None] = print) -> int:
    checks = [
        _python(),
        _torch(settings),
        *_data_dir(settings),
        _database(settings),
        _port(settings),
        _worker(settings),
        _systemd(),
        _monitoring(settings),
    ]
    width = max(len(c.name) for c in checks)
    for check in checks:
        out(f"[{check.status:^4}] {check.name:<{width}}  {check.detail}")
        if check.fix:
            out(f"       {'':<{width}}  -> {check.fix}")
    failed = sum(c.status == FAIL for c in checks)
    warned = sum(c.status == WARN for c in checks)
    out(f"\n{len(checks)} checks: {failed} failed, {warned} warnings")
    return 1 if failed else 0
