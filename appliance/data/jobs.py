"""SQL for ``jobs``, shared by the async API and the synchronous worker and CLI.

Each function returns ``(sql, params)`` so both kinds of connection run the same statements. A job's
state change commits with its ``job.updated`` event (appliance.data.events) in the stores
(appliance.jobs.store, appliance.jobs.async_store); these functions only say what changes.
"""

from __future__ import annotations

from typing import Any

from appliance.data.database import Query, placeholders
from appliance.data.events import encode

# The states in which a job still holds (or waits for) the worker: a resource is busy while its job is.
ACTIVE = ("queued", "running", "paused")
ACTIVE_WHERE = "status IN (" + ", ".join(f"'{s}'" for s in ACTIVE) + ")"  # for statements with other parameters


def insert_job(
    job_id: str,
    kind: str,
    lane: str,
    params: dict[str, Any],
    target: tuple[str, str] | None,
    now: float,
    control: str | None = None,
) -> Query:
    """A queued job; ``control``: asked of it before it runs (see ``start``)."""
    target_type, target_id = target if target else (None, None)
    return (
        "INSERT INTO jobs (id, kind, lane, status, params, target_type, target_id, control, created_at, updated_at)"
        " VALUES (?, ?, ?, 'queued', ?, ?, ?, ?, ?, ?)",
        (job_id, kind, lane, encode(params), target_type, target_id, control, now, now),
    )


def get_job(job_id: str) -> Query:
    return "SELECT * FROM jobs WHERE id = ?", (job_id,)


def list_jobs(statuses: list[str] | None, kind: str | None, page: int, limit: int) -> tuple[Query, Query]:
    """The page of jobs (newest first) and the total count, with the same filter."""
    where: list[str] = []
    params: list[Any] = []
    if statuses:
        where.append(f"status IN ({placeholders(statuses)})")
        params.extend(statuses)
    if kind:
        where.append("kind = ?")
        params.append(kind)
    clause = f" WHERE {' AND '.join(where)}" if where else ""
    rows = (
        f"SELECT * FROM jobs{clause} ORDER BY created_at DESC, id DESC LIMIT ? OFFSET ?",
        (*params, limit, (page - 1) * limit),
    )
    count = (f"SELECT count(*) FROM jobs{clause}", tuple(params))
    return rows, count


def with_status(*statuses: str) -> Query:
    """Jobs in any of ``statuses``, oldest first."""
    return f"SELECT * FROM jobs WHERE status IN ({placeholders(statuses)}) ORDER BY created_at", statuses


def queued_before(cutoff: float) -> Query:
    """Queued jobs created at or before ``cutoff`` (the worker re-sends those whose task was lost)."""
    return "SELECT id, kind FROM jobs WHERE status = 'queued' AND created_at <= ?", (cutoff,)


# -- transitions: each changes no row when the job is no longer in the state it starts from -----------
def start(job_id: str, now: float) -> Query:
    """queued -> running (a job already taken, or cancelled, changes nothing). A control asked of the
    queued job stays for its handler (a paused training stopped runs again only to end); every other way
    into the queue clears it."""
    return (
        "UPDATE jobs SET status = 'running', started_at = ?, attempts = attempts + 1,"
        " error_code = NULL, error_message = NULL, updated_at = ? WHERE id = ? AND status = 'queued'",
        (now, now, job_id),
    )


def finish(
    job_id: str, status: str, result: str | None, error: tuple[str, str] | None, message: str | None, now: float
) -> Query:
    """The job's outcome; ``result`` is already JSON. A completed job's progress is 1."""
    code, text = error if error else (None, None)
    progress = ", progress = 1" if status == "completed" else ""
    return (
        f"UPDATE jobs SET status = ?, finished_at = ?, control = NULL, result = ?, error_code = ?,"
        f" error_message = ?, message = coalesce(?, message){progress}, updated_at = ? WHERE id = ?",
        (status, now, result, code, text, message, now, job_id),
    )


def requeue(job_id: str, message: str, now: float) -> Query:
    return (
        "UPDATE jobs SET status = 'queued', control = NULL, message = ?, updated_at = ? WHERE id = ?",
        (message, now, job_id),
    )


def set_status(job_id: str, status: str, message: str, now: float) -> Query:
    return (
        "UPDATE jobs SET status = ?, control = NULL, message = ?, updated_at = ? WHERE id = ?",
        (status, message, now, job_id),
    )


def resume(job_id: str, now: float, control: str | None = None) -> Query:
    """paused -> queued; its handler picks up from its own checkpoint (``control``: asked of it from its start)."""
    return (
        "UPDATE jobs SET status = 'queued', control = ?, message = 'Resuming', updated_at = ?"
        " WHERE id = ? AND status = 'paused'",
        (control, now, job_id),
    )


def cancel_waiting(job_id: str, now: float) -> Query:
    """A job that is not running (queued, or paused) is cancelled at once; a running one is asked."""
    return (
        "UPDATE jobs SET status = 'cancelled', control = NULL, finished_at = ?, updated_at = ?,"
        " message = 'Cancelled before it started' WHERE id = ? AND status IN ('queued', 'paused')",
        (now, now, job_id),
    )


def report(job_id: str, progress: float, message: str, now: float) -> Query:
    return "UPDATE jobs SET progress = ?, message = ?, updated_at = ? WHERE id = ?", (progress, message, now, job_id)


def record_memory(job_id: str, planned_mb: int | None, peak_mb: int | None, now: float) -> Query:
    """A running job's memory plan or peak (None leaves a value as it is)."""
    return (
        "UPDATE jobs SET memory_planned_mb = coalesce(?, memory_planned_mb),"
        " memory_peak_mb = coalesce(?, memory_peak_mb), updated_at = ? WHERE id = ?",
        (planned_mb, peak_mb, now, job_id),
    )


# -- controls: requests to a running handler, relayed by the worker's supervisor ------------------------
def request_control(job_id: str, control: str, statuses: tuple[str, ...], now: float) -> Query:
    """Ask a running job to stop/pause/save; only applies while the job is in one of ``statuses``. A
    "save" never replaces a control not yet relayed: a pause or stop asked just before it would be lost
    (and they save a checkpoint anyway)."""
    unrelayed = " AND control IS NULL" if control == "save" else ""
    return (
        f"UPDATE jobs SET control = ?, updated_at = ? WHERE id = ? AND status IN ({placeholders(statuses)}){unrelayed}",
        (control, now, job_id, *statuses),
    )


def controls(job_ids: list[str]) -> Query:
    return (
        f"SELECT id, control FROM jobs WHERE id IN ({placeholders(job_ids)}) AND control IS NOT NULL",
        tuple(job_ids),
    )


def clear_control(job_id: str, control: str) -> Query:
    """Forget a control once its handler has it (a "save now" is taken once)."""
    return "UPDATE jobs SET control = NULL WHERE id = ? AND control = ?", (job_id, control)


# -- the resource a job works on -------------------------------------------------------------------
def link_resource(table: str, row_id: str, job_id: str) -> Query:
    """Name the job on the row it works on (``table`` comes from code: appliance.api.queueing.TARGETS)."""
    return f"UPDATE {table} SET job_id = ? WHERE id = ?", (job_id, row_id)


# -- the CLI's summaries ----------------------------------------------------------------------------
def status_counts() -> Query:
    return "SELECT status, count(*) FROM jobs GROUP BY status", ()


def active() -> Query:
    return (
        f"SELECT id, kind, status, progress, message FROM jobs WHERE status IN ({placeholders(ACTIVE)})"
        " ORDER BY created_at",
        ACTIVE,
    )


def recent(status: str | None, limit: int) -> Query:
    where, params = (" WHERE status = ?", (status,)) if status else ("", ())
    return f"SELECT * FROM jobs{where} ORDER BY created_at DESC LIMIT ?", (*params, limit)


def live_targets() -> Query:
    """The resources queued, running or paused jobs work on (their uploads must stay)."""
    return f"SELECT target_id FROM jobs WHERE {ACTIVE_WHERE} AND target_id IS NOT NULL", ()
