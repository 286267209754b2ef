"""Server-Sent Events: the event log as a live stream.

``GET /api/events?topics=a,b`` streams every stored event whose topic matches (``training`` matches
``training:tr_x``). The SSE ``id:`` is the event's row id: a client reconnecting with
``Last-Event-ID`` (or ``?last_event_id=`` for curl) gets every later event exactly once, in order.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import msgspec
from litestar import get
from litestar.params import Parameter
from litestar.response import ServerSentEvent, ServerSentEventMessage

from appliance.api.state import ApiState
from appliance.errors import ValidationError
from appliance.events.fanout import Subscription
from appliance.jobs.records import FINAL_STATUSES, Event

_encode = msgspec.json.encode


def _message(event: Event) -> ServerSentEventMessage:
    payload = {
        "id": event.id,
        "topic": event.topic,
        "type": event.type,
        "job_id": event.job_id,
        "created_at": event.created_at,
        "data": event.data,
    }
    return ServerSentEventMessage(id=event.id, event=event.type, data=_encode(payload).decode())


def _ends_job(event: Event, job_id: str | None) -> bool:
    return (
        job_id is not None
        and event.type == "job.updated"
        and isinstance(event.data, dict)
        and event.data.get("status") in FINAL_STATUSES
    )


def parse_last_event_id(header: str | None, query: int | None) -> int | None:
    if header is not None and header.strip():
        try:
            value = int(header.strip())
        except ValueError:
            raise ValidationError(
                "Last-Event-ID must be an integer event id", details={"field": "Last-Event-ID", "value": header[:50]}
            ) from None
        if value < 0:
            raise ValidationError("Last-Event-ID must not be negative", details={"field": "Last-Event-ID"})
        return value
    return query


async def stream(api: ApiState, sub: Subscription, job_final: bool = False) -> AsyncIterator[ServerSentEventMessage]:
    """Replay what the client missed, then follow live events; heartbeat comments keep proxies open.

    ``job_final``: the job was already finished when the client connected, so the stream ends after
    the replay.
    """
    broadcaster = api.broadcaster
    heartbeat = api.settings.sse_heartbeat_s
    last_sent = sub.start
    try:
        yield ServerSentEventMessage(comment="connected", retry=api.settings.sse_retry_ms, data=None)
        last_yield = time.monotonic()
        needs_replay = True
        while True:
            if needs_replay or sub.overflowed:
                sub.overflowed = False
                scanned, more = last_sent, True
                while more:
                    events, scanned, more = await broadcaster.replay(sub, scanned)
                    for stored in events:
                        if stored.id is not None and stored.id > last_sent:
                            yield _message(stored)
                            last_sent = stored.id
                            last_yield = time.monotonic()
                            if _ends_job(stored, sub.job_id):
                                return
                needs_replay = False
                if job_final:
                    return
            timeout = max(0.0, heartbeat - (time.monotonic() - last_yield))
            try:
                event = await asyncio.wait_for(sub.queue.get(), timeout=timeout)
            except asyncio.TimeoutError:
                yield ServerSentEventMessage(comment="heartbeat", data=None)
                last_yield = time.monotonic()
                continue
            if event is None:
                return  # the server is shutting down
            if event.id is None:  # ephemeral: no id, so the client's Last-Event-ID stays put
                yield _message(event)
                last_yield = time.monotonic()
                continue
            if event.id <= last_sent:
                continue
            yield _message(event)
            last_sent = event.id
            last_yield = time.monotonic()
            if _ends_job(event, sub.job_id):
                return
    finally:
        broadcaster.unsubscribe(sub)


def _topics(raw: str | None) -> tuple[str, ...]:
    if not raw:
        return ()
    topics = tuple(t.strip() for t in raw.split(",") if t.strip())
    for topic in topics:
        if len(topic) > 200 or any(c in topic for c in "\x00\n\r"):
            raise ValidationError(
                "topics must be comma-separated names such as 'job' or 'training:tr_x'", details={"field": "topics"}
            )
    return topics


@get(
    "/api/events",
    tags=["events"],
    summary="Server-Sent Events stream of the event log",
    description="Each event: `id:` (row id), `event:` (type, e.g. job.updated), `data:` JSON "
    "{id, topic, type, job_id, created_at, data}. Resume with Last-Event-ID.",
)
async def events_stream(
    api: ApiState,
    topics: str | None = Parameter(default=None, description="Comma-separated topic filters"),
    last_event_id_header: str | None = Parameter(header="Last-Event-ID", default=None),
    last_event_id: int | None = Parameter(default=None, ge=0, description="Resume after this id (curl)"),
) -> ServerSentEvent:
    resume = parse_last_event_id(last_event_id_header, last_event_id)
    sub = await api.broadcaster.subscribe(_topics(topics), None, resume)
    return ServerSentEvent(stream(api, sub), headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
