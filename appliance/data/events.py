"""SQL for ``events``: the append-only log the SSE stream replays and follows. Each function returns a
``Query`` shared by the async API and the sync worker."""

from __future__ import annotations

from typing import Any

import msgspec

from appliance.contracts.events import checked
from appliance.data.database import Query

_encode = msgspec.json.encode


def encode(value: Any) -> str:
    return _encode(value).decode()


def insert(topic: str, type_: str, data: msgspec.Struct, job_id: str | None, durable: bool, now: float) -> Query:
    """An event of type ``type_`` carrying ``data``, its type's payload Struct (appliance.contracts.events;
    a ``job.updated`` carries the Job record). A wrong payload raises TypeError."""
    return (
        "INSERT INTO events (topic, type, job_id, durable, data, created_at) VALUES (?, ?, ?, ?, ?, ?)",
        (topic, type_, job_id, int(durable), encode(checked(type_, data)), now),
    )


def after(after_id: int, limit: int, job_id: str | None = None) -> Query:
    """Events after ``after_id`` in id order (one job's only, with ``job_id``)."""
    if job_id is not None:
        return ("SELECT * FROM events WHERE job_id = ? AND id > ? ORDER BY id LIMIT ?", (job_id, after_id, limit))
    return "SELECT * FROM events WHERE id > ? ORDER BY id LIMIT ?", (after_id, limit)


def last_id() -> Query:
    return "SELECT coalesce(max(id), 0) FROM events", ()


def thin(cutoff: float, keep_every: int) -> Query:
    """Retention: progress (non-durable) events older than ``cutoff`` are thinned to one in
    ``keep_every`` per topic and type, always keeping the newest; lifecycle (durable) events stay."""
    return (
        "DELETE FROM events WHERE id IN (SELECT id FROM ("
        " SELECT id, row_number() OVER (PARTITION BY topic, type ORDER BY id DESC) AS rn"
        " FROM events WHERE durable = 0 AND created_at < ?) WHERE rn > 1 AND rn % ? != 1)",
        (cutoff, keep_every),
    )
