"""The appliance's own state as the API reports it: the health of its parts and the worker's runtime."""

from __future__ import annotations

import shutil
import time
from typing import Any, Literal, NamedTuple

import msgspec

from appliance.config import Settings
from appliance.data import app_state
from appliance.data import workers as worker_sql
from appliance.data.database import AsyncDatabase, Row
from appliance.data.migrate import latest_version
from appliance.timefmt import iso

TotalSource = Literal["configured", "host"]


class MemoryPlan(NamedTuple):
    total_mb: float
    source: TotalSource
    budget_mb: float


def memory_plan(settings: Settings, host_mb: float) -> MemoryPlan:
    """The total the worker's admission plans with and the budget it derives (memory.admission): a
    configured total (a simulated board) replaces the host's RAM, so the figures shown are the ones
    that decide what runs."""
    total = settings.memory_total_mb or host_mb
    source: TotalSource = "configured" if settings.memory_total_mb else "host"
    return MemoryPlan(round(total, 1), source, round(total * settings.max_memory_fraction, 1))


class ComponentStatus(msgspec.Struct):
    ok: bool
    detail: str


class WorkerInfo(msgspec.Struct):
    pid: int
    alive: bool
    started_at: str
    last_seen_at: str
    python: str | None
    torch: str | None
    transformers: str | None


async def live_worker_pid(db: AsyncDatabase) -> int | None:
    """The pid of the worker that has not said it stopped (the monitor samples its memory)."""
    row = await db.one(worker_sql.latest())
    return row["pid"] if row is not None and row["stopped_at"] is None else None


async def components(db: AsyncDatabase, settings: Settings) -> dict[str, ComponentStatus]:
    """Database (migrated to the newest schema), worker (a fresh heartbeat), disk (1 GB free)."""
    version = await db.scalar(app_state.schema_version())
    latest = latest_version()
    found = {"database": ComponentStatus(version == latest, f"schema {version} of {latest}")}
    row = await db.one(worker_sql.latest())
    if row is not None and row["stopped_at"] is None:
        age = time.time() - row["heartbeat_at"]
        fresh = age <= settings.worker_stale_s
        found["worker"] = ComponentStatus(fresh, f"pid {row['pid']}, last seen {age:.1f}s ago")
    else:
        found["worker"] = ComponentStatus(False, "no worker running")
    usage = shutil.disk_usage(settings.data_dir)
    found["disk"] = ComponentStatus(usage.free > 1e9, f"{usage.free / 1e9:.1f} GB free in the data dir")
    return found


def _worker_info(row: Row, settings: Settings) -> WorkerInfo:
    details: dict[str, Any] = msgspec.json.decode(row["info"])
    alive = row["stopped_at"] is None and time.time() - row["heartbeat_at"] <= settings.worker_stale_s
    return WorkerInfo(
        row["pid"],
        alive,
        iso(row["started_at"]) or "",
        iso(row["heartbeat_at"]) or "",
        details.get("python"),
        details.get("torch"),
        details.get("transformers"),
    )


async def worker(db: AsyncDatabase, settings: Settings) -> WorkerInfo | None:
    """The worker seen last, alive or not (None: no worker ever ran on this data dir)."""
    row = await db.one(worker_sql.latest())
    return _worker_info(row, settings) if row is not None else None
