"""The last step of every endpoint that starts work: create the job for a resource row, record
the job on the row, answer 202 with the job. Row, job, its event and its queued task are created
together or not at all (a request refused on a full disk leaves nothing that runs later)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiosqlite
import msgspec
from litestar import Response

from appliance.api.envelope import Accepted, Meta, meta
from appliance.api.state import ApiState
from appliance.data.jobs import Query
from appliance.data.secrets import delete_secret, write_secret
from appliance.errors import AppError, Conflict, InsufficientMemory, NotFound, UpstreamUnavailable, ValidationError
from appliance.jobs.async_store import Within
from appliance.jobs.records import FINAL_STATUSES

# The tables whose rows carry the job working on them, and the target kind jobs name them by.
TARGETS = {"datasets": "dataset", "models": "model", "activation_sets": "activations", "trainings": "training"}


class AcceptedResponse(msgspec.Struct):
    data: Accepted
    meta: Meta


def accepted(job: Any) -> Response[AcceptedResponse]:
    return Response(AcceptedResponse(Accepted(job.id, job.status, job.kind), meta()), status_code=202)


def with_row(table: str, row_id: str, insert: Query | None = None) -> Within:
    """The resource side of a new job, for AsyncJobStore.create: ``insert`` (the resource's row, if
    the job creates it) and the row naming its job commit with the job, or nothing does."""
    async def within(db: aiosqlite.Connection, job_id: str) -> None:
        if insert is not None:
            await db.execute(*insert)
        await db.execute(f"UPDATE {table} SET job_id = ? WHERE id = ?", (job_id, row_id))
    return within


async def start_job(api: ApiState, kind: str, params: dict[str, Any], table: str, row_id: str,
                    insert: Query | None = None, secret: str | None = None) -> Response[AcceptedResponse]:
    """Create the job working on row ``row_id`` of ``table`` (and the row itself: ``insert``), all at once.
    ``secret`` (a Hub token) is stored for the worker under the row's id, and removed again if the job
    is not created."""
    assert api.db is not None and api.jobs is not None
    try:
        if secret:
            write_secret(api.settings.data_dir, row_id, secret)
        job = await api.jobs.create(kind, params, target=(TARGETS[table], row_id),
                                    within=with_row(table, row_id, insert))
    except BaseException:
        if secret:
            delete_secret(api.settings.data_dir, row_id)
        raise
    return accepted(job)


def _error_class(code: str) -> type[AppError]:
    for cls in (ValidationError, NotFound, Conflict, InsufficientMemory, UpstreamUnavailable):
        if cls.code == code:
            return cls
    return AppError


async def run_and_wait(api: ApiState, kind: str, params: dict[str, Any], timeout_s: float = 120.0) -> Any:
    """Run a short job (the interactive lane) and answer with its result, for requests a person
    waits on (a heatmap, an ablation). The job stays in the jobs list like any other."""
    assert api.jobs is not None
    job = await api.jobs.create(kind, params)
    deadline = time.monotonic() + timeout_s
    while job.status not in FINAL_STATUSES:
        if time.monotonic() > deadline:
            raise UpstreamUnavailable(f"The worker did not answer within {timeout_s:.0f} s (job {job.id} goes on)",
                                      details={"job_id": job.id})
        await asyncio.sleep(0.05)
        job = await api.jobs.get(job.id)
    if job.status != "completed":
        error = job.error
        raise _error_class(error.code if error else "CANCELLED")(
            error.message if error else f"Job {job.id} was {job.status}", details={"job_id": job.id},
            code=error.code if error else "CANCELLED")
    return job.result
