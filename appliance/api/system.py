"""System information: versions of the API and of the worker that owns the accelerator."""

from __future__ import annotations

import platform
import socket
import time
from typing import Any

import msgspec
from litestar import Controller, Request, get

from appliance import __version__
from appliance.api.envelope import Meta, meta
from appliance.api.state import api_state
from appliance.jobs import sql
from appliance.timefmt import iso


class WorkerInfo(msgspec.Struct):
    pid: int
    alive: bool
    started_at: str
    last_seen_at: str
    python: str | None
    torch: str | None
    transformers: str | None


class SystemInfo(msgspec.Struct):
    version: str
    device_name: str
    hostname: str
    platform: str
    python: str
    data_dir: str
    worker: WorkerInfo | None


class SystemInfoResponse(msgspec.Struct):
    data: SystemInfo
    meta: Meta


class SystemController(Controller):
    path = "/api/system"
    tags = ["system"]

    @get("/info", summary="Versions, platform and the worker's runtime")
    async def info(self, request: Request) -> SystemInfoResponse:
        api = api_state(request)
        assert api.db is not None
        rows = await api.db.execute_fetchall(*sql.latest_worker())
        worker = None
        if rows:
            row = rows[0]
            details: dict[str, Any] = msgspec.json.decode(row["info"])
            alive = row["stopped_at"] is None and time.time() - row["heartbeat_at"] <= api.settings.worker_stale_s
            worker = WorkerInfo(row["pid"], alive, iso(row["started_at"]), iso(row["heartbeat_at"]),
                                details.get("python"), details.get("torch"), details.get("transformers"))
        hostname = socket.gethostname()
        return SystemInfoResponse(SystemInfo(
            version=__version__, device_name=hostname, hostname=hostname, platform=platform.platform(),
            python=platform.python_version(), data_dir=str(api.settings.data_dir), worker=worker), meta())
