"""SQL for jobs and events, shared by the async API and the synchronous worker and CLI.

Each function returns ``(sql, params)`` so both kinds of connection run the same statements.
"""

from __future__ import annotations

from typing import Any

import msgspec

Query = tuple[str, tuple[Any, ...]]

_encode = msgspec.json.encode


def encode(value: Any) -> str:
    return _encode(value).decode()


def insert_job(job_id: str, kind: str, lane: str, params: dict[str, Any], target: tuple[str, str] | None,
               now: float) -> Query:
    target_type, target_id = target if target else (None, None)
    return (
        "INSERT INTO jobs (id, kind, lane, status, params, target_type, target_id, created_at, updated_at)"
        " VALUES (?, ?, ?, 'queued', ?, ?, ?, ?, ?)",
        (job_id, kind, lane, encode(params), target_type, target_id, now, now),
    )


def get_job(job_id: str) -> Query:
    return "SELECT * FROM jobs WHERE id = ?", (job_id,)


def list_jobs(statuses: list[str] | None, kind: str | None, page: int, limit: int) -> tuple[Query, Query]:
    """The page of jobs (newest first) and the total count, with the same filter."""
    where, params = [], []
    if statuses:
        where.append(f"status IN ({','.join('?' * len(statuses))})")
        params.extend(statuses)
    if kind:
        where.append("kind = ?")
        params.append(kind)
    clause = f" WHERE {' AND '.join(where)}" if where else ""
    rows = (f"SELECT * FROM jobs{clause} ORDER BY created_at DESC, id DESC LIMIT ? OFFSET ?",
            (*params, limit, (page - 1) * limit))
    count = (f"SELECT count(*) FROM jobs{clause}", tuple(params))
    return rows, count


def insert_event(topic: str, type_: str, data: Any, job_id: str | None, durable: bool, now: float) -> Query:
    return (
        "INSERT INTO events (topic, type, job_id, durable, data, created_at) VALUES (?, ?, ?, ?, ?, ?)",
        (topic, type_, job_id, int(durable), encode(data), now),
    )


def events_after(after_id: int, limit: int, job_id: str | None = None) -> Query:
    if job_id is not None:
        return ("SELECT * FROM events WHERE job_id = ? AND id > ? ORDER BY id LIMIT ?", (job_id, after_id, limit))
    return "SELECT * FROM events WHERE id > ? ORDER BY id LIMIT ?", (after_id, limit)


def last_event_id() -> Query:
    return "SELECT coalesce(max(id), 0) FROM events", ()


def request_control(job_id: str, control: str, statuses: tuple[str, ...], now: float) -> Query:
    """Ask a running job to stop/pause; only applies while the job is in one of ``statuses``."""
    return (
        f"UPDATE jobs SET control = ?, updated_at = ? WHERE id = ? AND status IN ({','.join('?' * len(statuses))})",
        (control, now, job_id, *statuses),
    )


def latest_worker() -> Query:
    return "SELECT * FROM workers ORDER BY heartbeat_at DESC LIMIT 1", ()
