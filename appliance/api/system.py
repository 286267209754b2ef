"""System: the device, the worker's runtime, live metrics and the Jetson power mode."""

from __future__ import annotations

import platform
import socket
import time
from typing import Any

import msgspec
from anyio import to_thread
from litestar import Controller, Request, get

from appliance import __version__
from appliance.api.envelope import Meta, meta
from appliance.api.state import api_state
from appliance.data import jobs as sql
from appliance.device.power import PowerMode, power_mode
from appliance.device.sample import Sample
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
    platform_kind: str
    board: str | None
    soc: str | None
    l4t: str | None
    jetpack: str | None
    gpu_name: str | None
    cuda_available: bool
    unified_memory: bool
    total_memory_mb: float
    memory_budget_mb: float
    python: str
    data_dir: str
    worker: WorkerInfo | None


class SystemInfoResponse(msgspec.Struct):
    data: SystemInfo
    meta: Meta


class Metrics(msgspec.Struct):
    latest: Sample | None
    history: list[Sample]
    interval_s: float
    source: str | None


class MetricsResponse(msgspec.Struct):
    data: Metrics
    meta: Meta


class PowerResponse(msgspec.Struct):
    data: PowerMode
    meta: Meta


class SystemController(Controller):
    path = "/api/system"
    tags = ["system"]

    @get("/info", summary="The device (board, SoC, L4T/JetPack, memory) and the worker's runtime")
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
        device = api.platform
        physical_mb = api.settings.memory_total_mb or device.total_memory_mb
        return SystemInfoResponse(SystemInfo(
            version=__version__, device_name=device.device_name, hostname=socket.gethostname(),
            platform=platform.platform(), platform_kind=device.kind, board=device.board, soc=device.soc,
            l4t=device.l4t, jetpack=device.jetpack, gpu_name=device.gpu_name,
            cuda_available=device.cuda_available, unified_memory=device.unified_memory,
            total_memory_mb=device.total_memory_mb,
            memory_budget_mb=round(physical_mb * api.settings.max_memory_fraction, 1),
            python=platform.python_version(), data_dir=str(api.settings.data_dir), worker=worker), meta())

    @get("/metrics", summary="Latest monitoring sample and the last minutes of history",
         description="Sampling runs only while someone listens: this call keeps it running for 30 s; "
                     "live samples stream as `system.metrics` events on /api/events.")
    async def metrics(self, request: Request) -> MetricsResponse:
        monitor = api_state(request).monitor
        assert monitor is not None
        latest, history = await monitor.snapshot()
        return MetricsResponse(Metrics(latest, history, monitor.interval, monitor.source_name), meta())

    @get("/power", summary="Jetson power mode (nvpmodel), read-only")
    async def power(self) -> PowerResponse:
        return PowerResponse(await to_thread.run_sync(power_mode), meta())
