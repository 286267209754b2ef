"""Free space on the data disk: checked before anything large is written, so the appliance never fills
its own disk (SQLite, and with it every job and the API, stops working on a full one)."""

from __future__ import annotations

import errno
import shutil
from pathlib import Path

from appliance.errors import InsufficientStorage

_MB = 1024 * 1024


def free_bytes(path: Path) -> int:
    """Bytes an unprivileged writer may still use on the filesystem holding ``path`` (or its nearest
    existing parent)."""
    probe = Path(path)
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return shutil.disk_usage(probe).free


def require_free(path: Path, needed_bytes: int, reserve_mb: int, what: str) -> None:
    """Raise INSUFFICIENT_STORAGE unless writing ``needed_bytes`` under ``path`` still leaves
    ``reserve_mb`` free."""
    free = free_bytes(path)
    if needed_bytes + reserve_mb * _MB > free:
        raise InsufficientStorage(
            f"Not enough disk space for {what}: it needs {_human(needed_bytes)} and the data disk has "
            f"{_human(free)} free, of which {reserve_mb} MB are kept in reserve (MISTUDIO_DISK_RESERVE_MB). "
            "Delete checkpoints, activation sets or datasets you no longer need.",
            details={"needed_bytes": needed_bytes, "free_bytes": free, "reserve_mb": reserve_mb},
        )


def is_disk_full(exc: BaseException) -> bool:
    """True for an error caused by a full disk or quota, however the library that hit it wrapped it
    (safetensors and SQLite report ENOSPC only in their message)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        text = str(current).lower()
        if "no space left on device" in text or "os error 28" in text or "database or disk is full" in text:
            return True
        current = current.__cause__ or current.__context__
    return False


def storage_error(exc: BaseException, what: str, path: Path) -> InsufficientStorage:
    """The INSUFFICIENT_STORAGE error for a write under ``path`` that failed on a full disk."""
    return InsufficientStorage(
        f"The data disk filled up while writing {what}; nothing partial was kept. Free space "
        "(delete checkpoints, activation sets or datasets you no longer need) and try again.",
        details={"cause": type(exc).__name__, "free_bytes": _free_or_zero(path)},
    )


def _free_or_zero(path: Path) -> int:
    try:
        return free_bytes(path)
    except OSError:
        return 0


def _human(n: int) -> str:
    return f"{n / _MB:.0f} MB" if n < 10 * 1024 * _MB else f"{n / 1024 / _MB:.1f} GB"
