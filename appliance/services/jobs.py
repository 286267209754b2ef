"""Jobs as the API offers them: which actions a job allows, the list filter, the self-test job, and
the two ways an endpoint starts work (a job for a resource row, or a short job answered in place).

A job's allowed actions are ``appliance.jobs.registry.job_actions``: the worker's ``job.updated``
events carry them too, so the rule lives beside the job kinds, where both processes reach it.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Annotated, Any, Literal

import msgspec

from appliance.contracts.params.selftest import SelftestParams
from appliance.data.jobs import Query, link_resource
from appliance.data.secrets import delete_secret, write_secret
from appliance.errors import AppError, Conflict, InsufficientMemory, NotFound, UpstreamUnavailable, ValidationError
from appliance.jobs.registry import job_actions

if TYPE_CHECKING:
    import aiosqlite

    from appliance.data.layout import DataLayout
    from appliance.jobs.async_store import AsyncJobStore, Within
    from appliance.jobs.records import Job

__all__ = [
    "TARGETS",
    "SelftestRequest",
    "job_actions",
    "run_and_wait",
    "start_job",
    "start_selftest",
    "status_filter",
    "with_row",
]

STATUSES = ("queued", "running", "paused", "completed", "failed", "cancelled")
_FINAL = ("completed", "failed", "cancelled")

# The tables whose rows carry the job working on them, and the target kind jobs name them by.
TARGETS = {"datasets": "dataset", "models": "model", "activation_sets": "activations", "trainings": "training"}


def status_filter(raw: str | None) -> list[str] | None:
    """``?status=a,b`` as a list, refusing names that are not statuses (a typo must not list nothing)."""
    if not raw:
        return None
    wanted = [s.strip() for s in raw.split(",") if s.strip()]
    unknown = [s for s in wanted if s not in STATUSES]
    if unknown:
        raise ValidationError(
            f"Unknown status {unknown[0]!r}; use {', '.join(STATUSES)}",
            details={"field": "status", "allowed": list(STATUSES)},
        )
    return wanted


class SelftestRequest(msgspec.Struct, forbid_unknown_fields=True):
    steps: Annotated[int, msgspec.Meta(ge=1, le=100_000)] = 10
    delay_ms: Annotated[int, msgspec.Meta(ge=0, le=60_000)] = 100
    fail_at: Annotated[int, msgspec.Meta(ge=1)] | None = None
    # Hold this much memory while running (tests the memory manager's admission).
    memory_mb: Annotated[int, msgspec.Meta(ge=0, le=10_000_000)] | None = None
    # Raise an out-of-memory error at this step (tests the clean failure).
    oom_at: Annotated[int, msgspec.Meta(ge=1)] | None = None
    # "heavy" runs in the single heavy slot, like a training would.
    lane: Literal["interactive", "heavy"] = "interactive"
    # Load torch in the worker and report its CPU thread pools (MISTUDIO_TORCH_THREADS) in the result.
    torch: bool = False


async def start_selftest(jobs: AsyncJobStore, data: SelftestRequest) -> Job:
    """The diagnostic job: one kind per lane, so a test can hold the heavy slot like a training."""
    kind = "selftest" if data.lane == "interactive" else "selftest.heavy"
    params = SelftestParams(
        steps=data.steps,
        delay_ms=data.delay_ms,
        fail_at=data.fail_at,
        memory_mb=data.memory_mb,
        oom_at=data.oom_at,
        torch=data.torch,
    )
    return await jobs.create(kind, params)


def with_row(table: str, row_id: str, insert: Query | None = None) -> Within:
    """The resource side of a new job, for AsyncJobStore.create: ``insert`` (the resource's row, if
    the job creates it) and the row naming its job commit with the job, or nothing does."""

    async def within(db: aiosqlite.Connection, job_id: str) -> None:
        if insert is not None:
            await db.execute(*insert)
        await db.execute(*link_resource(table, row_id, job_id))

    return within


async def start_job(
    jobs: AsyncJobStore,
    layout: DataLayout,
    kind: str,
    params: Any,
    table: str,
    row_id: str,
    insert: Query | None = None,
    secret: str | None = None,
) -> Job:
    """Create the job working on row ``row_id`` of ``table`` (and the row itself: ``insert``), all in one
    transaction, so an API that dies half-way leaves no row without its job. ``secret`` (a Hub token)
    is stored for the worker under the row's id, and removed again if the job is not created."""
    try:
        if secret:
            write_secret(layout.root, row_id, secret)
        return await jobs.create(kind, params, target=(TARGETS[table], row_id), within=with_row(table, row_id, insert))
    except BaseException:
        if secret:
            delete_secret(layout.root, row_id)
        raise


def _error_class(code: str) -> type[AppError]:
    for cls in (ValidationError, NotFound, Conflict, InsufficientMemory, UpstreamUnavailable):
        if cls.code == code:
            return cls
    return AppError


async def run_and_wait(jobs: AsyncJobStore, kind: str, params: Any, timeout_s: float = 120.0) -> Any:
    """Run a short job (the interactive lane) and answer with its result, for requests a person
    waits on (a heatmap, an ablation). The job stays in the jobs list like any other."""
    job = await jobs.create(kind, params)
    deadline = time.monotonic() + timeout_s
    while job.status not in _FINAL:
        if time.monotonic() > deadline:
            raise UpstreamUnavailable(
                f"The worker did not answer within {timeout_s:.0f} s (job {job.id} goes on)", details={"job_id": job.id}
            )
        await asyncio.sleep(0.05)
        job = await jobs.get(job.id)
    if job.status != "completed":
        error = job.error
        raise _error_class(error.code if error else "CANCELLED")(
            error.message if error else f"Job {job.id} was {job.status}",
            details={"job_id": job.id},
            code=error.code if error else "CANCELLED",
        )
    return job.result
