"""The answer of every endpoint that starts work: 202 with the job. The rules of starting it (the
resource row, the job, its event and its queued task created together or not at all) are
appliance.services.jobs."""

from __future__ import annotations

from litestar import Response

from appliance.api.envelope import Accepted, Envelope, ok
from appliance.jobs.records import Job

# The 202 answer's schema (the OpenAPI document names it; appliance.api.apidoc refers to it).
AcceptedResponse = Envelope[Accepted]


def accepted(job: Job) -> Response[Envelope[Accepted]]:
    return Response(ok(Accepted(job.id, job.status, job.kind)), status_code=202)
