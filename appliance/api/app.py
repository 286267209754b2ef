"""The Litestar application factory."""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from typing import AsyncIterator

from litestar import Litestar
from litestar.config.compression import CompressionConfig
from litestar.datastructures import State
from litestar.exceptions import NotFoundException
from litestar.openapi import OpenAPIConfig
from litestar.types import ASGIApp

from appliance import __version__
from appliance.api import uploads
from appliance.api.access import guard
from appliance.api.activations import ActivationsController, ExtractionController
from appliance.api.apidoc import complete as complete_openapi
from appliance.api.body import StrictJsonRequest
from appliance.api.datasets import DatasetsController
from appliance.api.errors import EXCEPTION_HANDLERS
from appliance.api.events import events_stream
from appliance.api.features import FeaturesController
from appliance.api.health import HealthController
from appliance.api.jobs import JobsController
from appliance.api.models import ModelsController
from appliance.api.monitor import Monitor
from appliance.api.schema_viewer import LocalSwaggerPlugin
from appliance.api.seeds import seed_first_start
from appliance.api.settings import SettingsController
from appliance.api.spa import not_found_handler, ui_routes
from appliance.api.state import DEPENDENCIES, ApiState
from appliance.api.steering import SteeringController
from appliance.api.steering_presets import SteeringPresetsController
from appliance.api.system import SystemController
from appliance.api.templates import ExtractionTemplatesController, TrainingTemplatesController
from appliance.api.tokenize import TokenizeController
from appliance.api.training import TrainingController
from appliance.api.training_import import TrainingImportController
from appliance.config import Settings, get_settings
from appliance.data import connect_async, migrate
from appliance.data.database import AsyncDatabase
from appliance.device.platform import detect_cached
from appliance.events.fanout import Broadcaster
from appliance.jobs.async_store import AsyncJobStore
from appliance.jobs.queue import JobQueue
from appliance.memory.admission import MemoryManager
from appliance.services.system import live_worker_pid

log = logging.getLogger("mistudio.api")


def create_app(settings: Settings | None = None) -> Litestar:
    settings = settings or get_settings()
    api = ApiState(settings=settings, queue=JobQueue(settings.queue_path), broadcaster=Broadcaster(settings.sse_poll_s))

    async def worker_pid() -> int | None:
        return await live_worker_pid(api.database) if api.database is not None else None

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        migrate(settings.db_path)
        api.db = await connect_async(settings.db_path)
        api.database = AsyncDatabase(api.db, api.db_lock)
        api.events_db = await connect_async(settings.db_path)
        api.jobs = AsyncJobStore(
            api.database, api.queue, settings.db_path, memory=MemoryManager.from_settings(settings)
        )
        await uploads.sweep(api)  # before serving: no upload is in flight yet
        await seed_first_start(api)
        await api.broadcaster.start(AsyncDatabase(api.events_db), settings.db_path)
        api.platform = detect_cached(settings.host_root)
        api.monitor = Monitor(settings, api.platform, api.broadcaster, worker_pid)
        api.monitor.start()
        try:
            yield
        finally:
            await api.monitor.close()
            await api.broadcaster.close()
            api.jobs.close()
            await api.events_db.close()
            await api.db.close()

    handlers = {**EXCEPTION_HANDLERS, NotFoundException: not_found_handler(settings.webui_dir)}
    app = Litestar(
        route_handlers=[
            HealthController,
            SystemController,
            JobsController,
            DatasetsController,
            TokenizeController,
            ModelsController,
            ExtractionController,
            ActivationsController,
            ExtractionTemplatesController,
            TrainingTemplatesController,
            TrainingController,
            TrainingImportController,
            FeaturesController,
            SettingsController,
            SteeringController,
            SteeringPresetsController,
            events_stream,
            *ui_routes(settings.webui_dir),
        ],
        lifespan=[lifespan],
        dependencies=DEPENDENCIES,
        state=State({"api": api}),
        exception_handlers=handlers,  # type: ignore[arg-type]
        request_max_body_size=settings.max_body_bytes,
        request_class=StrictJsonRequest,
        # Gzip pays off for the UI's assets; API answers are small, and the per-request cost of the
        # compressor showed up in the latency profile.
        compression_config=CompressionConfig(backend="gzip", minimum_size=1024, exclude=["^/api/", "^/schema"]),
        openapi_config=OpenAPIConfig(
            title="MechInterp Studio API", version=__version__, path="/schema", render_plugins=[LocalSwaggerPlugin()]
        ),
        debug=False,
        logging_config=None,  # the process's one logging setup (commands/logs.py); Litestar's would replace it
    )
    complete_openapi(app, settings)  # the document as the API answers: errors, 202s, ids, streams
    return app


def asgi_app(app: Litestar, settings: Settings) -> ASGIApp:
    """What the server runs: the app behind its access checks (host, token, origin, content type)."""
    return guard(app, settings)
