"""Running the API under uvicorn, with a shutdown that does not wait on open SSE streams."""

from __future__ import annotations

import asyncio
from typing import Any

import uvicorn

from appliance.config import Settings

GRACEFUL_SHUTDOWN_S = 3


class _Server(uvicorn.Server):
    """Ends event streams as soon as a stop signal arrives; otherwise uvicorn waits for every SSE
    client to hang up before it stops (and systemd would time out)."""

    def __init__(self, config: uvicorn.Config, app: Any):
        super().__init__(config)
        self._app = app

    def handle_exit(self, sig: int, frame: Any) -> None:
        broadcaster = self._app.state["api"].broadcaster
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if loop is not None:
            loop.create_task(broadcaster.close())
        super().handle_exit(sig, frame)


def serve(settings: Settings) -> None:
    from appliance.api.app import asgi_app, create_app

    app = create_app(settings)
    config = uvicorn.Config(
        asgi_app(app, settings),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        # uvicorn's records go to the handler appliance.commands.logs set up (one format; its access
        # lines only at debug), not to a logging config of its own.
        log_config=None,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
        proxy_headers=False,
        server_header=False,
        access_log=settings.log_level == "debug",
        lifespan="on",
    )
    _Server(config, app).run()
