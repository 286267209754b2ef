"""What request handlers share: settings, the DB connection, the job store and the event fan-out."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import aiosqlite
from litestar import Request
from litestar.datastructures import State

from appliance.config import Settings
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


def api_state(state: State) -> ApiState:
    return state["api"]


def from_request(request: Request) -> ApiState:
    return request.app.state["api"]
