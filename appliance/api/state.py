"""What request handlers share: settings, the DB connection, the job store and the event fan-out."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import aiosqlite
from litestar import Request

from appliance.config import Settings
from appliance.device.monitor import Monitor
from appliance.device.platform import PlatformInfo
from appliance.jobs.async_store import AsyncJobStore
from appliance.jobs.broadcast import Broadcaster
from appliance.jobs.queue import JobQueue


@dataclass
class ApiState:
    settings: Settings
    queue: JobQueue
    broadcaster: Broadcaster
    started_at: float = field(default_factory=time.time)
    db: aiosqlite.Connection | None = None
    events_db: aiosqlite.Connection | None = None
    jobs: AsyncJobStore | None = None
    # Guards writes on the shared aiosqlite connection so transactions never interleave.
    db_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    platform: PlatformInfo | None = None
    monitor: Monitor | None = None
    # (monotonic time, components) of the last health check; see api/health.py.
    health_cache: tuple[float, Any] | None = None


def api_state(request: Request) -> ApiState:
    # Taking the request (not a `state: State` parameter, which Litestar copies per request) keeps
    # the hot path cheap.
    return request.app.state["api"]
