"""Where uploads land (<data dir>/uploads/<resource id>/) until their import job has read them.

A request body is taken as it arrives, refused when the data disk has no room for it (announced or
counted), and a client that goes away mid-upload ends the request with one log line. An upload cut
short by a killed API never becomes a job; the folders no live job reads are removed at start.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, cast

from anyio import to_thread
from litestar import Request

from appliance.api.multipart import PayloadTooLarge
from appliance.api.state import ApiState
from appliance.config import Settings
from appliance.data import jobs
from appliance.data.layout import DataLayout
from appliance.data.storage import require_free
from appliance.errors import AppError
from appliance.jobs import finalize

log = logging.getLogger("mistudio.api")

MULTIPART_OVERHEAD = 1 << 20  # headers and small fields around the file part


class ClientDisconnected(AppError):
    """The client closed the connection before its upload ended; nobody reads this answer."""

    code = "CLIENT_DISCONNECTED"
    status_code = 400


def folder(settings: Settings, resource_id: str) -> Path:
    return DataLayout(settings.data_dir).upload(resource_id)


def check_announced(request: Request[Any, Any, Any], settings: Settings) -> None:
    """Refuse an upload before reading it: over the upload limit, or more than the data disk can take
    while keeping its reserve (by its Content-Length; a chunked one is counted as it arrives)."""
    limit = settings.max_upload_bytes
    announced = request.headers.get("content-length")
    size = int(announced) if announced and announced.isdigit() else 0
    if size > limit + MULTIPART_OVERHEAD:
        raise PayloadTooLarge(
            f"The upload is larger than the limit of {limit:,} bytes (MISTUDIO_MAX_UPLOAD_BYTES)",
            details={"limit": limit},
        )
    require_free(settings.data_dir, size, settings.disk_reserve_mb, "this upload")


def space_check(settings: Settings) -> Callable[[int], None]:
    """For multipart.receive: before each chunk is written, the disk must keep its reserve after it."""

    def check(size: int) -> None:
        require_free(settings.data_dir, size, settings.disk_reserve_mb, "this upload")

    return check


async def body(request: Request[Any, Any, Any]) -> AsyncIterator[bytes]:
    """The request body as it arrives. Litestar's Request.stream() turns a client that disconnects into
    a 500 (and a stack trace in the log); here it is ClientDisconnected, after one line in the log."""
    received = 0
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            log.info(
                "%s %s: the client disconnected after %d bytes; its partial upload is discarded",
                request.method,
                request.url.path,
                received,
            )
            raise ClientDisconnected("The client disconnected before the upload ended")
        chunk = cast(bytes, message.get("body", b""))
        if chunk:
            received += len(chunk)
            yield chunk
        if not message.get("more_body", False):
            return


async def sweep(api: ApiState) -> None:
    """Remove the upload folders no queued, running or paused job reads: uploads cut short when the API
    was killed (they never became a job) and leftovers of ended ones. Runs at start, before any request."""
    if api.database is None:
        raise RuntimeError("the database is not open yet: sweep runs in the app's lifespan, after it opens")
    root = api.layout.uploads
    if not root.is_dir():
        return
    live = {row["target_id"] for row in await api.database.all(jobs.live_targets())}
    for entry in sorted(root.iterdir()):
        if entry.name in live:
            continue
        await to_thread.run_sync(finalize.remove, [entry])
        log.info("removed %s: an upload no job reads (cut short by a restart)", entry)
