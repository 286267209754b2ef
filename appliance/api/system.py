"""System: the device, the worker's runtime, live metrics, the Jetson power mode and the data disk's use
(storage: what takes the space, and the prunes of older checkpoints and cache entries)."""

from __future__ import annotations

import platform
import socket

import msgspec
from anyio import to_thread
from litestar import Controller, get, post

from appliance import __version__
from appliance.api.apidoc import errors
from appliance.api.envelope import Envelope, ok
from appliance.api.state import ApiState, NotStarted
from appliance.config import Settings
from appliance.data.database import AsyncDatabase
from appliance.data.layout import DataLayout
from appliance.device.power import PowerMode, power_mode
from appliance.device.sample import Sample
from appliance.services import storage, system
from appliance.services.storage import CachePruneRequest, Storage, StoragePruned
from appliance.services.system import TotalSource, WorkerInfo


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
    # The memory the appliance plans with: MISTUDIO_MEMORY_TOTAL_MB when set (a simulated board,
    # total_memory_source "configured"), else the host's RAM ("host").
    total_memory_mb: float
    total_memory_source: TotalSource
    host_memory_mb: float  # the host's RAM as /proc/meminfo reports it, whatever is configured
    memory_budget_mb: float  # MISTUDIO_MAX_MEMORY_FRACTION of total_memory_mb: what all jobs together may use
    python: str
    data_dir: str
    worker: WorkerInfo | None


class Metrics(msgspec.Struct):
    latest: Sample | None
    history: list[Sample]
    interval_s: float
    source: str | None


class SystemController(Controller):
    path = "/api/system"
    tags = ["system"]

    @get("/info", summary="The device (board, SoC, L4T/JetPack, memory) and the worker's runtime")
    async def info(self, api: ApiState, db: AsyncDatabase, settings: Settings) -> Envelope[SystemInfo]:
        worker = await system.worker(db, settings)
        device = api.platform
        if device is None:
            raise NotStarted("the device is not detected yet")
        memory = system.memory_plan(settings, device.total_memory_mb)
        return ok(
            SystemInfo(
                version=__version__,
                device_name=device.device_name,
                hostname=socket.gethostname(),
                platform=platform.platform(),
                platform_kind=device.kind,
                board=device.board,
                soc=device.soc,
                l4t=device.l4t,
                jetpack=device.jetpack,
                gpu_name=device.gpu_name,
                cuda_available=device.cuda_available,
                unified_memory=device.unified_memory,
                total_memory_mb=memory.total_mb,
                total_memory_source=memory.source,
                host_memory_mb=device.total_memory_mb,
                memory_budget_mb=memory.budget_mb,
                python=platform.python_version(),
                data_dir=str(settings.data_dir),
                worker=worker,
            )
        )

    @get(
        "/metrics",
        summary="Latest monitoring sample and the last minutes of history",
        description="Sampling runs only while someone listens: this call keeps it running for 30 s; "
        "live samples stream as `system.metrics` events on /api/events.",
    )
    async def metrics(self, api: ApiState) -> Envelope[Metrics]:
        monitor = api.monitor
        if monitor is None:
            raise NotStarted("the monitor is not started yet")
        latest, history = await monitor.snapshot()
        return ok(Metrics(latest, history, monitor.interval, monitor.source_name))

    @get("/power", summary="Jetson power mode (nvpmodel), read-only")
    async def power(self) -> Envelope[PowerMode]:
        return ok(await to_thread.run_sync(power_mode))

    @get(
        "/storage",
        summary="The data disk: free, total and reserve, and what takes the space, largest first",
        description="Sizes are read from the files (a walk of the data dir): each dataset, model, activation "
        "set and training (split into its parts), each cache entry (Hub downloads, unfinished downloads, "
        "uploads and leftovers no resource owns) and the appliance's own files. Delete a resource with its "
        "own DELETE endpoint; prune with the POSTs below.",
    )
    async def storage_use(self, db: AsyncDatabase, layout: DataLayout, settings: Settings) -> Envelope[Storage]:
        return ok(await storage.overview(db, layout, settings.disk_reserve_mb))

    @post(
        "/storage/trainings/{training_id:str}/prune",
        responses=errors(404, 409),
        status_code=200,
        summary="Delete a training's older checkpoints: the newest, the best held-out one and yours stay",
    )
    async def prune_checkpoints(
        self, db: AsyncDatabase, layout: DataLayout, training_id: str
    ) -> Envelope[StoragePruned]:
        return ok(await storage.prune_checkpoints(db, layout, training_id))

    @post(
        "/storage/cache/prune",
        responses=errors(404, 409),
        status_code=200,
        summary="Delete one cache entry (its path as GET /api/system/storage lists it)",
    )
    async def prune_cache(
        self, db: AsyncDatabase, layout: DataLayout, data: CachePruneRequest
    ) -> Envelope[StoragePruned]:
        return ok(await storage.prune_cache(db, layout, data.path))
