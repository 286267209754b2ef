"""Job and event records as they leave the system (API responses, SSE data, CLI output)."""

from __future__ import annotations

import sqlite3
from typing import Any, Literal

import msgspec

from appliance.timefmt import iso

JobStatus = Literal["queued", "running", "paused", "completed", "failed", "cancelled"]
Lane = Literal["heavy", "interactive"]
ACTIVE_STATUSES = ("queued", "running", "paused")
FINAL_STATUSES = ("completed", "failed", "cancelled")


class JobError(msgspec.Struct):
    code: str
    message: str


class JobTarget(msgspec.Struct):
    type: str
    id: str


class Job(msgspec.Struct):
    id: str
    kind: str
    lane: Lane
    status: JobStatus
    progress: float
    message: str
    params: dict[str, Any]
    result: Any | None
    error: JobError | None
    target: JobTarget | None
    attempts: int
    created_at: str
    started_at: str | None
    finished_at: str | None
    updated_at: str
    # What the API allows now ("cancel", "pause", "resume", "stop", "save_checkpoint"), so clients do
    # not re-derive the rules from the status.
    actions: list[str] = msgspec.field(default_factory=list)
    # Memory, in MB, of a job that memory admission let run (one that loads a model or trains): the plan is
    # the worker's resident memory when the job was admitted plus what admission reserved for it (set when
    # admitted); the peak is the worker's peak resident memory while the job ran, plus the CUDA allocator's
    # peak on a GPU (set when the run ends). Both are the whole worker's: a job beside it counts too.
    memory_planned_mb: int | None = None
    memory_peak_mb: int | None = None


class Event(msgspec.Struct):
    id: int | None  # None: an ephemeral event (system.metrics), streamed live but never stored
    topic: str
    type: str
    job_id: str | None
    data: Any
    created_at: str


_json_decode = msgspec.json.decode


def _required_iso(ts: float) -> str:
    """A NOT NULL timestamp column as ISO text (iso() also takes the nullable ones)."""
    return iso(ts) or ""


def job_from_row(row: sqlite3.Row, actions: list[str] | None = None) -> Job:
    error = JobError(row["error_code"], row["error_message"] or "") if row["error_code"] else None
    target = JobTarget(row["target_type"], row["target_id"]) if row["target_type"] else None
    return Job(
        id=row["id"],
        kind=row["kind"],
        lane=row["lane"],
        status=row["status"],
        progress=row["progress"],
        message=row["message"],
        params=_json_decode(row["params"]),
        result=_json_decode(row["result"]) if row["result"] else None,
        error=error,
        target=target,
        attempts=row["attempts"],
        created_at=_required_iso(row["created_at"]),
        started_at=iso(row["started_at"]),
        finished_at=iso(row["finished_at"]),
        updated_at=_required_iso(row["updated_at"]),
        actions=actions or [],
        memory_planned_mb=row["memory_planned_mb"],
        memory_peak_mb=row["memory_peak_mb"],
    )


def event_from_row(row: sqlite3.Row) -> Event:
    return Event(
        id=row["id"],
        topic=row["topic"],
        type=row["type"],
        job_id=row["job_id"],
        data=_json_decode(row["data"]),
        created_at=_required_iso(row["created_at"]),
    )
