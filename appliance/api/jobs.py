"""Jobs: list, read, cancel, their events, and the built-in self-test job."""

from __future__ import annotations

from typing import Literal

from litestar import Controller, Response, get, post
from litestar.params import Parameter
from litestar.response import ServerSentEvent

from appliance.api import envelope
from appliance.api import events as sse
from appliance.api.apidoc import errors
from appliance.api.envelope import Accepted, Envelope, ok
from appliance.api.queueing import accepted
from appliance.api.state import ApiState
from appliance.api.validation import check_id
from appliance.events.fanout import Subscription
from appliance.jobs.async_store import AsyncJobStore
from appliance.jobs.records import FINAL_STATUSES, Event, Job
from appliance.services import jobs as service
from appliance.services.jobs import SelftestRequest


class JobsController(Controller):
    path = "/api/jobs"
    tags = ["jobs"]

    @get("/", summary="Jobs, newest first")
    async def list_jobs(
        self,
        jobs: AsyncJobStore,
        status: str | None = Parameter(default=None, description="Comma-separated statuses"),
        kind: str | None = Parameter(default=None, max_length=100),
        page: int = Parameter(default=1, ge=1, le=1_000_000),
        limit: int = Parameter(default=50, ge=1, le=200),
    ) -> Envelope[list[Job]]:
        found, total = await jobs.list(service.status_filter(status), kind, page, limit)
        return envelope.page(found, page, limit, total)

    @get("/{job_id:str}", summary="One job: status, progress, message, error, result, allowed actions")
    async def get_job(self, jobs: AsyncJobStore, job_id: str) -> Envelope[Job]:
        return ok(await jobs.get(check_id(job_id, "job", "job_id")))

    @post(
        "/{job_id:str}/cancel",
        responses=errors(409),
        status_code=200,
        summary="Cancel a job: a queued one at once, a running one within about a second",
    )
    async def cancel_job(self, jobs: AsyncJobStore, job_id: str) -> Envelope[Job]:
        return ok(await jobs.cancel(check_id(job_id, "job", "job_id")))

    @get("/{job_id:str}/events", summary="A job's events: SSE until the job ends, or JSON with format=json")
    async def job_events(
        self,
        api: ApiState,
        jobs: AsyncJobStore,
        job_id: str,
        format: Literal["sse", "json"] = "sse",
        after: int = Parameter(default=0, ge=0),
        limit: int = Parameter(default=500, ge=1, le=5000),
        last_event_id_header: str | None = Parameter(header="Last-Event-ID", default=None),
    ) -> ServerSentEvent | Envelope[list[Event]]:
        job = await jobs.get(check_id(job_id, "job", "job_id"))
        resume = sse.parse_last_event_id(last_event_id_header, after) or 0
        if format == "json":
            # A poll: read the stored events without registering a live subscriber.
            events, _, _ = await api.broadcaster.replay(Subscription((), job.id, resume), resume)
            return ok(events[:limit])
        sub = await api.broadcaster.subscribe((), job.id, resume)
        return ServerSentEvent(
            sse.stream(api, sub, job_final=job.status in FINAL_STATUSES),
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    @post("/selftest", summary="Start the diagnostic job: counts to `steps` with `delay_ms` between steps")
    async def selftest(self, jobs: AsyncJobStore, data: SelftestRequest) -> Response[Envelope[Accepted]]:
        return accepted(await service.start_selftest(jobs, data))
