"""Steering: ``POST /api/steering/generate`` (unsteered and steered text from one request; the
method and the metrics are in appliance/pipeline/steering/generate.py). Presets are in steering_presets.py.

A plain request answers with both texts and the metrics when they are done (curl); with
``stream: true`` it answers 202 with the job, and the tokens arrive on the event stream
(``GET /api/events?topics=job:<id>``) as ``steering.token``, then ``steering.completed``.
Generation runs on the worker's interactive lane, so it is served while a training runs. The rules
are in ``appliance.services.steering``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from litestar import Controller, Response, post

from appliance.api.apidoc import accepted_too, errors
from appliance.api.envelope import ok
from appliance.api.queueing import accepted
from appliance.data.database import AsyncDatabase
from appliance.jobs.async_store import AsyncJobStore
from appliance.services import steering as service
from appliance.services.steering import Wanted


class FeatureIn(msgspec.Struct, forbid_unknown_fields=True):
    index: Annotated[int, msgspec.Meta(ge=0)]
    coefficient: Annotated[float, msgspec.Meta(ge=-100, le=100)] = 0.0
    mode: Literal["add", "clamp", "ablate"] = "add"


class SteeringOptions(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """What a generation request and a preset share."""

    training_id: str
    features: Annotated[list[FeatureIn], msgspec.Meta(max_length=32)] = msgspec.field(default_factory=list)
    intervention_layer: Annotated[int, msgspec.Meta(ge=0, le=1000)] | None = None
    temperature: Annotated[float, msgspec.Meta(ge=0, le=2)] = 0.7
    top_p: Annotated[float, msgspec.Meta(gt=0, le=1)] = 1.0
    max_tokens: Annotated[int, msgspec.Meta(ge=1, le=2048)] = 100
    seed: Annotated[int, msgspec.Meta(ge=0, le=2**31 - 1)] | None = None


class GenerateRequest(SteeringOptions, kw_only=True):
    prompt: Annotated[str, msgspec.Meta(min_length=1, max_length=8000)]
    stream: bool = False


class SteeringController(Controller):
    tags = ["steering"]

    @post(
        "/api/steering/generate",
        responses={**errors(404, 409, 502, 503), **accepted_too()},
        status_code=200,
        summary="Unsteered and steered generations from one prompt and seed, with comparison metrics",
    )
    async def generate(self, db: AsyncDatabase, jobs: AsyncJobStore, data: GenerateRequest) -> Response[Any]:
        params = await service.generation(
            db,
            data.training_id,
            [Wanted(f.index, f.coefficient, f.mode) for f in data.features],
            data.intervention_layer,
            data.prompt,
            data.temperature,
            data.top_p,
            data.max_tokens,
            data.seed,
            data.stream,
        )
        if data.stream:
            return accepted(await service.start(jobs, params))
        return Response(ok(await service.run(jobs, params)))
