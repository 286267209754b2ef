"""Small readers of /proc and /sys, shared by platform detection, monitoring and `mistudio doctor`."""

from __future__ import annotations

from pathlib import Path


def read_text(path: Path) -> str | None:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return None


def meminfo_kb(root: Path = Path("/")) -> dict[str, int]:
    """/proc/meminfo as {key: kB}."""
    values: dict[str, int] = {}
    for line in (read_text(root / "proc/meminfo") or "").splitlines():
        key, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            values[key.strip()] = int(parts[0])
    return values


def process_rss_mb(pid: int) -> float | None:
    for line in (read_text(Path(f"/proc/{pid}/status")) or "").splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return None
