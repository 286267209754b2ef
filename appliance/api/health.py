"""Liveness, readiness and an overall health summary for the header indicator and monitors."""

from __future__ import annotations

import shutil
import time

import msgspec
from litestar import Controller, Request, get

from appliance import __version__
from appliance.api.apidoc import errors
from appliance.api.envelope import Meta, meta
from appliance.api.state import ApiState, api_state
from appliance.data import jobs as sql
from appliance.data.migrate import latest_version
from appliance.errors import AppError


class ComponentStatus(msgspec.Struct):
    ok: bool
    detail: str


class Health(msgspec.Struct):
    status: str  # healthy | degraded
    version: str
    uptime_s: float
    components: dict[str, ComponentStatus]


class HealthResponse(msgspec.Struct):
    data: Health
    meta: Meta


class Live(msgspec.Struct):
    status: str


class LiveResponse(msgspec.Struct):
    data: Live
    meta: Meta


class NotReady(AppError):
    code = "NOT_READY"
    status_code = 503
    retryable = True


HEALTH_CACHE_S = 1.0


async def _components(request: Request) -> dict[str, ComponentStatus]:
    # Every open UI polls health; checking the disk and the worker once a second is plenty.
    api = api_state(request)
    cached = api.health_cache
    if cached is not None and time.monotonic() - cached[0] < HEALTH_CACHE_S:
        return cached[1]
    components = await _check(api)
    api.health_cache = (time.monotonic(), components)
    return components


async def _check(api: ApiState) -> dict[str, ComponentStatus]:
    db = api.db
    assert db is not None
    version = (await db.execute_fetchall("PRAGMA user_version"))[0][0]
    latest = latest_version()
    components = {"database": ComponentStatus(version == latest, f"schema {version} of {latest}")}
    rows = await db.execute_fetchall(*sql.latest_worker())
    if rows and rows[0]["stopped_at"] is None:
        age = time.time() - rows[0]["heartbeat_at"]
        fresh = age <= api.settings.worker_stale_s
        components["worker"] = ComponentStatus(fresh, f"pid {rows[0]['pid']}, last seen {age:.1f}s ago")
    else:
        components["worker"] = ComponentStatus(False, "no worker running")
    usage = shutil.disk_usage(api.settings.data_dir)
    free_gb = usage.free / 1e9
    components["disk"] = ComponentStatus(usage.free > 1e9, f"{free_gb:.1f} GB free in the data dir")
    return components


class HealthController(Controller):
    path = "/api/health"
    tags = ["health"]

    @get("/", summary="Overall health: database, worker, disk")
    async def health(self, request: Request) -> HealthResponse:
        components = await _components(request)
        status = "healthy" if all(c.ok for c in components.values()) else "degraded"
        uptime = time.time() - api_state(request).started_at
        return HealthResponse(Health(status, __version__, round(uptime, 1), components), meta())

    @get("/live", summary="The API process is up")
    async def live(self) -> LiveResponse:
        return LiveResponse(Live("ok"), meta())

    @get("/ready", responses=errors(503), summary="Ready: database migrated and a worker seen recently (else 503)")
    async def ready(self, request: Request) -> HealthResponse:
        components = await _components(request)
        failing = {name: c.detail for name, c in components.items() if not c.ok and name != "disk"}
        if failing:
            raise NotReady("Not ready: " + "; ".join(f"{k}: {v}" for k, v in failing.items()), details=failing)
        uptime = time.time() - api_state(request).started_at
        return HealthResponse(Health("healthy", __version__, round(uptime, 1), components), meta())
