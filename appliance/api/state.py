"""What request handlers share: settings, the data dir's layout, the database, the job store and the
event fan-out; and the providers that inject them into handlers (Litestar dependency injection), so a
handler names what it needs (``db: AsyncDatabase``) instead of reaching into the app state."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import aiosqlite
from litestar import Request
from litestar.di import Provide

from appliance.api.monitor import Monitor
from appliance.config import Settings
from appliance.data.database import AsyncDatabase
from appliance.data.layout import DataLayout
from appliance.device.platform import PlatformInfo
from appliance.events.fanout import Broadcaster
from appliance.jobs.async_store import AsyncJobStore
from appliance.jobs.queue import JobQueue


@dataclass
class ApiState:
    settings: Settings
    queue: JobQueue
    broadcaster: Broadcaster
    started_at: float = field(default_factory=time.time)
    db: aiosqlite.Connection | None = None
    database: AsyncDatabase | None = None  # the data-access layer's door onto ``db``
    events_db: aiosqlite.Connection | None = None
    jobs: AsyncJobStore | None = None
    # Guards writes on the shared aiosqlite connection so transactions never interleave.
    db_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    platform: PlatformInfo | None = None
    monitor: Monitor | None = None
    # (monotonic time, components) of the last health check; see api/health.py.
    health_cache: tuple[float, Any] | None = None

    @cached_property
    def layout(self) -> DataLayout:
        return DataLayout(self.settings.data_dir)


def api_state(request: Request) -> ApiState:
    # Taking the request (not a `state: State` parameter, which Litestar copies per request) keeps
    # the hot path cheap.
    return request.app.state["api"]


class NotStarted(RuntimeError):
    """A request reached a handler before the app's lifespan opened the database."""


# The providers form one chain (api -> settings -> layout -> db -> jobs): Litestar resolves
# dependencies of the same depth concurrently in a task group, which cost ~30 us per dependency per
# request (measured: /api/health fell from ~17,000 to ~4,700 req/s with three independent ones); a
# chain is resolved by plain awaits, one after the other, for a few microseconds each.


def _api(request: Request) -> ApiState:
    return api_state(request)


def _settings(api: ApiState) -> Settings:
    return api.settings


def _layout(api: ApiState, settings: Settings) -> DataLayout:
    return api.layout


def _database(api: ApiState, layout: DataLayout) -> AsyncDatabase:
    if api.database is None:
        raise NotStarted("the database is not open yet")
    return api.database


def _jobs(api: ApiState, db: AsyncDatabase) -> AsyncJobStore:
    if api.jobs is None:
        raise NotStarted("the job store is not open yet")
    return api.jobs


# Handlers declare any of these parameters by name; the app registers them once (api/app.py).
DEPENDENCIES = {
    "api": Provide(_api, sync_to_thread=False),
    "settings": Provide(_settings, sync_to_thread=False),
    "layout": Provide(_layout, sync_to_thread=False),
    "db": Provide(_database, sync_to_thread=False),
    "jobs": Provide(_jobs, sync_to_thread=False),
}
