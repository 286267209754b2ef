"""The Jetson power mode (nvpmodel), read-only: changing it is a root operation left to the user."""

from __future__ import annotations

import re
import shutil
import subprocess

import msgspec


class PowerMode(msgspec.Struct):
    available: bool
    mode_id: int | None
    mode_name: str | None
    detail: str


def parse_nvpmodel(output: str) -> tuple[str | None, int | None]:
    """``NV Power Mode: 15W\\n0`` -> ("15W", 0)."""
    name = re.search(r"NV Power Mode:\s*(.+)", output)
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    mode_id = int(lines[-1]) if lines and lines[-1].isdigit() else None
    return (name.group(1).strip() if name else None), mode_id


def power_mode() -> PowerMode:
    tool = shutil.which("nvpmodel")
    if tool is None:
        return PowerMode(False, None, None, "nvpmodel not found: power modes exist on Jetson boards only")
    try:
        result = subprocess.run([tool, "-q"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return PowerMode(False, None, None, f"nvpmodel -q failed: {exc}")
    name, mode_id = parse_nvpmodel(result.stdout)
    if result.returncode != 0 or name is None:
        return PowerMode(False, None, None, (result.stderr or result.stdout).strip()[:300] or "no answer")
    return PowerMode(True, mode_id, name, "Change it with: sudo nvpmodel -m <id> (see jetson/README.md)")
