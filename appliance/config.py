"""The one place where configuration is read.

Every setting comes from a ``MISTUDIO_*`` environment variable (documented in the README) so that the
API process, the worker, the CLI and systemd units all agree without a config file to keep in sync.
"""

from __future__ import annotations

import os
import re
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec

if TYPE_CHECKING:
    from appliance.data.layout import DataLayout

_CHECKOUT_ROOT = Path(__file__).resolve().parent.parent


def _default_data_dir() -> Path:
    # In a source checkout the data dir sits beside the code (./data); an installed package run as a
    # service gets MISTUDIO_DATA_DIR from its unit file.
    return _CHECKOUT_ROOT / "data"


def _default_webui_dir() -> Path:
    return _CHECKOUT_ROOT / "webui" / "dist"


class ConfigError(ValueError):
    """A MISTUDIO_* variable holds a value that cannot be used."""


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    data_dir: Path
    host: str = "0.0.0.0"
    port: int = 8000
    token: str | None = None
    # Host names the API answers to besides IP literals, localhost, this machine's hostname and
    # <hostname>.local: any other name in a Host header may be a DNS-rebinding page. ("*",) = any.
    allowed_hosts: tuple[str, ...] = ()
    log_level: str = "info"
    # Fraction of physical RAM all jobs together may use (unified memory on a Jetson).
    max_memory_fraction: float = 0.85
    webui_dir: Path
    worker_threads: int = 2
    torch_threads: int = 0  # 0 = let torch decide
    max_body_bytes: int = 10 * 1024 * 1024
    # Largest dataset file accepted by POST /api/datasets/upload (streamed to disk, never held in RAM).
    max_upload_bytes: int = 2 * 1024**3
    # Streamed SAE training: tokens per shuffle buffer (the memory manager may halve it at a run's start).
    stream_buffer_tokens: int = 1 << 16
    # Activation extraction: all hooks' shard buffers together, the one part of its memory that grows
    # with a run (smaller on a tight board means more, smaller shard files).
    activation_shard_mb: int = 64
    # Space on the data disk that no write of the appliance may take (checkpoints, uploads, imports,
    # activations): a full disk would stop SQLite, and with it every job and the API.
    disk_reserve_mb: int = 256
    # Checkpoints a training keeps: the newest N plus the one of lowest held-out loss (and those a
    # user saved with "save now"); older ones are deleted as new ones land. 0 = keep every one.
    keep_checkpoints: int = 3
    # Create the demo dataset (Python standard library docstrings) on first start.
    seed_demo: bool = True
    sse_heartbeat_s: float = 15.0
    sse_poll_s: float = 0.01
    sse_retry_ms: int = 3000
    event_retention_hours: float = 24.0
    worker_stale_s: float = 15.0
    # `mistudio up` restarts an API or worker that exits after this delay, doubling with each exit up
    # to restart_backoff_max_s; a process that stays up restart_healthy_s starts again from the first delay.
    restart_backoff_s: float = 1.0
    restart_backoff_max_s: float = 30.0
    restart_healthy_s: float = 60.0
    # Physical RAM in MB as the memory manager sees it; None = read /proc/meminfo. Set it to simulate a
    # smaller board (e.g. 8192 for an Orin Nano) on a bigger machine.
    memory_total_mb: float | None = None
    # Loaded models not used for this long are unloaded by the worker.
    model_idle_s: float = 600.0
    metrics_interval_s: float = 2.0
    # The tegrastats executable; None = find it on PATH (Jetson only).
    tegrastats_path: str | None = None
    # Prefix for host files read by platform detection (/proc/device-tree, /etc/nv_tegra_release, ...):
    # for containers that mount the host elsewhere, and for tests that simulate a Jetson.
    host_root: Path = Path("/")

    @property
    def layout(self) -> DataLayout:
        # Imported here: loading the data package at import would slow every CLI command down.
        from appliance.data.layout import DataLayout

        return DataLayout(self.data_dir)

    @property
    def db_path(self) -> Path:
        return self.layout.db

    @property
    def queue_path(self) -> Path:
        return self.layout.queue

    @property
    def api_url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
        return f"http://{host}:{self.port}"


def _env(name: str) -> str | None:
    value = os.environ.get(f"MISTUDIO_{name}")
    return value if value not in (None, "") else None


def _number(name: str, default: float, kind: type, lo: float, hi: float) -> float:
    raw = _env(name)
    if raw is None:
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise ConfigError(f"MISTUDIO_{name}={raw!r} is not a {kind.__name__}") from None
    if not lo <= value <= hi:
        raise ConfigError(f"MISTUDIO_{name}={raw!r} must be between {lo} and {hi}")
    return value


_HOST_NAME = re.compile(r"^[a-z0-9_]([a-z0-9_-]{0,62})(\.[a-z0-9_]([a-z0-9_-]{0,62}))*$")


def _host_names(name: str) -> tuple[str, ...]:
    """A comma list of DNS names (case and a trailing dot do not matter), or ``*`` for any."""
    raw = _env(name) or ""
    names = tuple(dict.fromkeys(part.strip().lower().rstrip(".") for part in raw.split(",") if part.strip()))
    if "*" in names:
        return ("*",)
    for host in names:
        if not _HOST_NAME.match(host):
            raise ConfigError(f"MISTUDIO_{name}: {host!r} is not a host name (give names only, no scheme or port)")
    return names


def load_settings() -> Settings:
    """Read the environment now (tests change it between runs; use get_settings() elsewhere)."""
    log_level = (_env("LOG_LEVEL") or "info").lower()
    if log_level not in ("debug", "info", "warning", "error", "critical"):
        raise ConfigError(f"MISTUDIO_LOG_LEVEL={log_level!r} is not a log level")
    return Settings(
        data_dir=Path(_env("DATA_DIR") or _default_data_dir()).expanduser().resolve(),
        host=_env("HOST") or "0.0.0.0",
        port=int(_number("PORT", 8000, int, 0, 65535)),
        token=_env("TOKEN"),
        allowed_hosts=_host_names("ALLOWED_HOSTS"),
        log_level=log_level,
        max_memory_fraction=_number("MAX_MEMORY_FRACTION", 0.85, float, 0.1, 0.99),
        webui_dir=Path(_env("WEBUI_DIR") or _default_webui_dir()).expanduser().resolve(),
        worker_threads=int(_number("WORKER_THREADS", 2, int, 1, 16)),
        torch_threads=int(_number("TORCH_THREADS", 0, int, 0, 256)),
        max_body_bytes=int(_number("MAX_BODY_BYTES", 10 * 1024 * 1024, int, 1024, 1 << 40)),
        max_upload_bytes=int(_number("MAX_UPLOAD_BYTES", 2 * 1024**3, int, 1024, 1 << 44)),
        stream_buffer_tokens=int(_number("STREAM_BUFFER_TOKENS", 1 << 16, int, 1024, 1 << 26)),
        activation_shard_mb=int(_number("ACTIVATION_SHARD_MB", 64, int, 1, 4096)),
        disk_reserve_mb=int(_number("DISK_RESERVE_MB", 256, int, 0, 1 << 30)),
        keep_checkpoints=int(_number("KEEP_CHECKPOINTS", 3, int, 0, 1_000_000)),
        seed_demo=bool(_number("SEED_DEMO", 1, int, 0, 1)),
        sse_heartbeat_s=_number("SSE_HEARTBEAT_S", 15.0, float, 0.1, 300),
        sse_poll_s=_number("SSE_POLL_S", 0.01, float, 0.005, 5),
        sse_retry_ms=int(_number("SSE_RETRY_MS", 3000, int, 100, 600_000)),
        event_retention_hours=_number("EVENT_RETENTION_HOURS", 24.0, float, 0.0, 24 * 3650),
        worker_stale_s=_number("WORKER_STALE_S", 15.0, float, 1, 3600),
        restart_backoff_s=_number("RESTART_BACKOFF_S", 1.0, float, 0.01, 3600),
        restart_backoff_max_s=_number("RESTART_BACKOFF_MAX_S", 30.0, float, 0.01, 3600),
        restart_healthy_s=_number("RESTART_HEALTHY_S", 60.0, float, 0.1, 86400),
        memory_total_mb=_number("MEMORY_TOTAL_MB", 0, float, 0, 1 << 30) or None,
        model_idle_s=_number("MODEL_IDLE_S", 600.0, float, 0, 7 * 86400),
        metrics_interval_s=_number("METRICS_INTERVAL_S", 2.0, float, 0.2, 60),
        tegrastats_path=_env("TEGRASTATS"),
        host_root=Path(_env("HOST_ROOT") or "/"),
    )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()
