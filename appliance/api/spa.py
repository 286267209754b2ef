"""The prebuilt UI (webui/dist) at ``/``, with client-side routes falling back to index.html."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from litestar import MediaType, Request, Response, get, head
from litestar.exceptions import NotFoundException
from litestar.response import File
from litestar.static_files import create_static_files_router

from appliance.api.errors import http_error_handler

_NO_UI = """<!doctype html><html><head><meta charset="utf-8"><title>MechInterp Studio</title></head>
<body style="font-family:sans-serif;background:#0f172a;color:#e2e8f0;padding:2rem">
<h1>MechInterp Studio</h1><p>The API is running, but the web UI build (webui/dist) is missing.</p>
<p>API reference: <a style="color:#34d399" href="/schema">/schema</a></p></body></html>"""


def ui_routes(webui_dir: Path) -> list[Any]:
    # HEAD / answers as GET / does, without the body (RFC 9110: HEAD is supported wherever GET is);
    # Litestar's static router answers HEAD for its files but not for its root.
    index = webui_dir / "index.html"
    if index.is_file():

        @head("/", include_in_schema=False)
        async def ui_head() -> File:
            return File(index, filename="index.html", media_type=MediaType.HTML, content_disposition_type="inline")

        return [create_static_files_router(path="/", directories=[webui_dir], html_mode=True, name="ui"), ui_head]

    @get("/", include_in_schema=False, media_type=MediaType.HTML)
    async def no_ui() -> str:
        return _NO_UI

    @head("/", include_in_schema=False, media_type=MediaType.HTML)
    async def no_ui_head() -> None:
        return None

    return [no_ui, no_ui_head]


def not_found_handler(webui_dir: Path) -> Callable[[Request[Any, Any, Any], NotFoundException], Response[Any]]:
    index = webui_dir / "index.html"

    def handler(request: Request[Any, Any, Any], exc: NotFoundException) -> Response[Any]:
        path = request.url.path
        is_api = path == "/api" or path.startswith("/api/")
        # A client-side route (no file extension) reloads into the app; a missing asset or an
        # unknown API path is a real 404 in the error envelope.
        if not is_api and request.method in ("GET", "HEAD") and "." not in path.rsplit("/", 1)[-1] and index.is_file():
            return Response(index.read_bytes(), media_type=MediaType.HTML, headers={"Cache-Control": "no-cache"})
        return http_error_handler(request, exc)

    return handler
