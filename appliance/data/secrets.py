"""Write-only secrets (Hub tokens, LLM keys): files with 0600 permissions in <data dir>/secrets, read
by the worker when a job needs them and never returned by the API or written to logs or events."""

from __future__ import annotations

import os
import re
from pathlib import Path

from appliance.data import redact

_NAME = re.compile(r"^[A-Za-z0-9_-]{1,100}$")


def _path(data_dir: Path, name: str) -> Path:
    if not _NAME.match(name):
        raise ValueError(f"bad secret name {name!r}")
    folder = data_dir / "secrets"
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    return folder / name


def write_secret(data_dir: Path, name: str, value: str) -> None:
    path = _path(data_dir, name)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(value)


def read_secret(data_dir: Path, name: str) -> str | None:
    path = _path(data_dir, name)
    value = path.read_text() if path.exists() else None
    redact.remember(value)  # scrubbed from the worker's output even once the file is deleted
    return value


def delete_secret(data_dir: Path, name: str) -> None:
    _path(data_dir, name).unlink(missing_ok=True)
