"""Activation sets: extraction from a model over a dataset (started from the model), list, detail,
delete. Routing and validation only: the rules are in appliance.services.activations."""

from __future__ import annotations

from litestar import Controller, Response, delete, get, post

from appliance.api.apidoc import errors
from appliance.api.envelope import Accepted, Envelope, ok
from appliance.api.queueing import accepted
from appliance.data.database import AsyncDatabase
from appliance.data.layout import DataLayout
from appliance.jobs.async_store import AsyncJobStore
from appliance.services import activations as service
from appliance.services.activations import ActivationSet, ExtractRequest


class ExtractionController(Controller):
    path = "/api/models"
    tags = ["activations"]

    @post(
        "/{model_id:str}/extract-activations",
        responses=errors(409),
        summary="Extract activations of chosen layers over a dataset",
    )
    async def extract(
        self, db: AsyncDatabase, jobs: AsyncJobStore, layout: DataLayout, model_id: str, data: ExtractRequest
    ) -> Response[Envelope[Accepted]]:
        return accepted(await service.extract(db, jobs, layout, model_id, data))


class ActivationsController(Controller):
    path = "/api/activations"
    tags = ["activations"]

    @get("/", summary="Activation sets, newest first")
    async def list_sets(self, db: AsyncDatabase) -> Envelope[list[ActivationSet]]:
        return ok(await service.list_sets(db))

    @get("/{activation_id:str}", summary="One activation set with its manifest")
    async def get_set(self, db: AsyncDatabase, activation_id: str) -> Envelope[ActivationSet]:
        return ok(await service.get_set(db, activation_id))

    @delete(
        "/{activation_id:str}",
        responses=errors(409),
        status_code=200,
        summary="Delete an activation set and its shards",
    )
    async def delete_set(self, db: AsyncDatabase, layout: DataLayout, activation_id: str) -> Envelope[ActivationSet]:
        return ok(await service.delete_set(db, layout, activation_id))
