"""SQL for ``workers``: one row per worker run, with the heartbeat the API's readiness reads."""

from __future__ import annotations

from appliance.data.database import Query


def insert(worker_id: str, pid: int, hostname: str, info: str, now: float) -> Query:
    return (
        "INSERT INTO workers (id, pid, hostname, started_at, heartbeat_at, info) VALUES (?, ?, ?, ?, ?, ?)",
        (worker_id, pid, hostname, now, now, info),
    )


def heartbeat(worker_id: str, now: float) -> Query:
    return "UPDATE workers SET heartbeat_at = ? WHERE id = ?", (now, worker_id)


def stopped(worker_id: str, now: float) -> Query:
    return "UPDATE workers SET stopped_at = ? WHERE id = ?", (now, worker_id)


def latest() -> Query:
    """The worker seen last (alive or not: ``stopped_at`` says)."""
    return "SELECT * FROM workers ORDER BY heartbeat_at DESC LIMIT 1", ()
