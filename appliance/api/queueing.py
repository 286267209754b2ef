"""The last step of every endpoint that starts work: create the job for a resource row, record
the job on the row, answer 202 with the job."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Response

from appliance.api.envelope import Accepted, Meta, meta
from appliance.api.state import ApiState

# The tables whose rows carry the job working on them, and the target kind jobs name them by.
TARGETS = {"datasets": "dataset", "models": "model", "activation_sets": "activations", "trainings": "training"}


class AcceptedResponse(msgspec.Struct):
    data: Accepted
    meta: Meta


def accepted(job: Any) -> Response[AcceptedResponse]:
    return Response(AcceptedResponse(Accepted(job.id, job.status, job.kind), meta()), status_code=202)


async def start_job(api: ApiState, kind: str, params: dict[str, Any], table: str,
                    row_id: str) -> Response[AcceptedResponse]:
    assert api.db is not None and api.jobs is not None
    job = await api.jobs.create(kind, params, target=(TARGETS[table], row_id))
    async with api.db_lock:
        await api.db.execute(f"UPDATE {table} SET job_id = ? WHERE id = ?", (job.id, row_id))
    return accepted(job)
