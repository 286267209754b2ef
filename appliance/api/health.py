"""Liveness, readiness and an overall health summary for the header indicator and monitors."""

from __future__ import annotations

import time

import msgspec
from litestar import Controller, get

from appliance import __version__
from appliance.api.apidoc import errors
from appliance.api.envelope import Envelope, ok
from appliance.api.state import ApiState
from appliance.config import Settings
from appliance.data.database import AsyncDatabase
from appliance.errors import AppError
from appliance.services import system
from appliance.services.system import ComponentStatus


class Health(msgspec.Struct):
    status: str  # healthy | degraded
    version: str
    uptime_s: float
    components: dict[str, ComponentStatus]


class Live(msgspec.Struct):
    status: str


class NotReady(AppError):
    code = "NOT_READY"
    status_code = 503
    retryable = True


HEALTH_CACHE_S = 1.0


async def _components(api: ApiState, db: AsyncDatabase, settings: Settings) -> dict[str, ComponentStatus]:
    # Every open UI polls health; checking the disk and the worker once a second is plenty.
    cached = api.health_cache
    if cached is not None and time.monotonic() - cached[0] < HEALTH_CACHE_S:
        found: dict[str, ComponentStatus] = cached[1]
        return found
    found = await system.components(db, settings)
    api.health_cache = (time.monotonic(), found)
    return found


class HealthController(Controller):
    path = "/api/health"
    tags = ["health"]

    @get("/", summary="Overall health: database, worker, disk")
    async def health(self, api: ApiState, db: AsyncDatabase, settings: Settings) -> Envelope[Health]:
        components = await _components(api, db, settings)
        status = "healthy" if all(c.ok for c in components.values()) else "degraded"
        return ok(Health(status, __version__, round(time.time() - api.started_at, 1), components))

    @get("/live", summary="The API process is up")
    async def live(self) -> Envelope[Live]:
        return ok(Live("ok"))

    @get("/ready", responses=errors(503), summary="Ready: database migrated and a worker seen recently (else 503)")
    async def ready(self, api: ApiState, db: AsyncDatabase, settings: Settings) -> Envelope[Health]:
        components = await _components(api, db, settings)
        failing = {name: c.detail for name, c in components.items() if not c.ok and name != "disk"}
        if failing:
            raise NotReady("Not ready: " + "; ".join(f"{k}: {v}" for k, v in failing.items()), details=failing)
        return ok(Health("healthy", __version__, round(time.time() - api.started_at, 1), components))
