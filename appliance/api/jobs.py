"""Jobs: list, read, cancel, their events, and the built-in self-test job."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.params import Parameter
from litestar.response import ServerSentEvent

from appliance.api import events as sse
from appliance.api.apidoc import errors
from appliance.api.envelope import Meta, meta, page_meta
from appliance.api.queueing import AcceptedResponse, accepted
from appliance.api.state import api_state
from appliance.api.validation import check_id
from appliance.contracts.params.selftest import SelftestParams
from appliance.errors import ValidationError
from appliance.events.fanout import Subscription
from appliance.jobs.records import FINAL_STATUSES, Event, Job

_STATUSES = ("queued", "running", "paused", "completed", "failed", "cancelled")


class JobResponse(msgspec.Struct):
    data: Job
    meta: Meta


class JobListResponse(msgspec.Struct):
    data: list[Job]
    meta: Meta


class EventListResponse(msgspec.Struct):
    data: list[Event]
    meta: Meta



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


def _statuses(raw: str | None) -> list[str] | None:
    if not raw:
        return None
    wanted = [s.strip() for s in raw.split(",") if s.strip()]
    unknown = [s for s in wanted if s not in _STATUSES]
    if unknown:
        raise ValidationError(f"Unknown status {unknown[0]!r}; use {', '.join(_STATUSES)}",
                              details={"field": "status", "allowed": list(_STATUSES)})
    return wanted


class JobsController(Controller):
    path = "/api/jobs"
    tags = ["jobs"]

    @get("/", summary="Jobs, newest first")
    async def list_jobs(
        self, request: Request,
        status: str | None = Parameter(default=None, description="Comma-separated statuses"),
        kind: str | None = Parameter(default=None, max_length=100),
        page: int = Parameter(default=1, ge=1, le=1_000_000),
        limit: int = Parameter(default=50, ge=1, le=200),
    ) -> JobListResponse:
        jobs, total = await api_state(request).jobs.list(_statuses(status), kind, page, limit)
        return JobListResponse(jobs, page_meta(page, limit, total))

    @get("/{job_id:str}", summary="One job: status, progress, message, error, result")
    async def get_job(self, request: Request, job_id: str) -> JobResponse:
        return JobResponse(await api_state(request).jobs.get(check_id(job_id, "job", "job_id")), meta())

    @post("/{job_id:str}/cancel", responses=errors(409), status_code=200,
          summary="Cancel a job: a queued one at once, a running one within about a second")
    async def cancel_job(self, request: Request, job_id: str) -> JobResponse:
        return JobResponse(await api_state(request).jobs.cancel(check_id(job_id, "job", "job_id")), meta())

    @get("/{job_id:str}/events", summary="A job's events: SSE until the job ends, or JSON with format=json")
    async def job_events(
        self, request: Request, job_id: str,
        format: Literal["sse", "json"] = "sse",
        after: int = Parameter(default=0, ge=0),
        limit: int = Parameter(default=500, ge=1, le=5000),
        last_event_id_header: str | None = Parameter(header="Last-Event-ID", default=None),
    ) -> ServerSentEvent | EventListResponse:
        api = api_state(request)
        job = await api.jobs.get(check_id(job_id, "job", "job_id"))
        resume = sse.parse_last_event_id(last_event_id_header, after) or 0
        if format == "json":
            # A poll: read the stored events without registering a live subscriber.
            events, _, _ = await api.broadcaster.replay(Subscription((), job.id, resume), resume)
            return EventListResponse(events[:limit], meta())
        sub = await api.broadcaster.subscribe((), job.id, resume)
        return ServerSentEvent(sse.stream(api, sub, job_final=job.status in FINAL_STATUSES),
                               headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    @post("/selftest", summary="Start the diagnostic job: counts to `steps` with `delay_ms` between steps")
    async def selftest(self, request: Request, data: SelftestRequest) -> Response[AcceptedResponse]:
        kind = "selftest" if data.lane == "interactive" else "selftest.heavy"
        params = SelftestParams(steps=data.steps, delay_ms=data.delay_ms, fail_at=data.fail_at,
                                memory_mb=data.memory_mb, oom_at=data.oom_at, torch=data.torch)
        job = await api_state(request).jobs.create(kind, params)
        return accepted(job)
