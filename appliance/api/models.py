"""Models: the demo model, Hub downloads, folder imports, list, detail, architecture, capabilities,
delete. Routing and validation only: the rules are in appliance.services.models."""

from __future__ import annotations

from litestar import Controller, Response, delete, get, post

from appliance.api.apidoc import errors
from appliance.api.envelope import Accepted, Envelope, ok
from appliance.api.queueing import accepted
from appliance.api.seeds import demo_model
from appliance.api.state import ApiState, NotStarted
from appliance.contracts.params.models import ModelArchitecture
from appliance.data.database import AsyncDatabase
from appliance.data.layout import DataLayout
from appliance.device.platform import PlatformInfo
from appliance.jobs.async_store import AsyncJobStore
from appliance.services import models as service
from appliance.services.models import Capabilities, DownloadRequest, ImportRequest, Model


def platform_of(api: ApiState) -> PlatformInfo:
    """The device the worker loads models on, detected once at start-up."""
    if api.platform is None:
        raise NotStarted("the platform is not detected yet")
    return api.platform


class ModelsController(Controller):
    path = "/api/models"
    tags = ["models"]

    @get("/", summary="Models, newest first")
    async def list_models(self, db: AsyncDatabase) -> Envelope[list[Model]]:
        return ok(await service.list_models(db))

    @get("/capabilities", summary="Precisions this device can load models in, and why not")
    async def capabilities(self, api: ApiState) -> Envelope[Capabilities]:
        return ok(service.device_capabilities(platform_of(api)))

    @post("/download", summary="Download a model from the Hugging Face Hub (safetensors preferred)")
    async def download(
        self, api: ApiState, jobs: AsyncJobStore, layout: DataLayout, data: DownloadRequest
    ) -> Response[Envelope[Accepted]]:
        return accepted(await service.download(jobs, layout, platform_of(api), data))

    @post("/import", summary="Import a model folder from <data dir>/imports (config.json + weights)")
    async def import_folder(
        self, api: ApiState, jobs: AsyncJobStore, layout: DataLayout, data: ImportRequest
    ) -> Response[Envelope[Accepted]]:
        return accepted(await service.import_folder(jobs, layout, platform_of(api), data))

    @post(
        "/demo",
        responses=errors(409),
        summary="(Re)register the built-in demo model (409 naming it while one is registered)",
    )
    async def demo(self, jobs: AsyncJobStore) -> Response[Envelope[Accepted]]:
        # The check for an existing demo model is made inside the transaction that creates the new one,
        # so concurrent requests register one model: the others get 409 naming it.
        return accepted(await demo_model(jobs))

    @get("/{model_id:str}", summary="One model")
    async def get_model(self, db: AsyncDatabase, model_id: str) -> Envelope[Model]:
        return ok(await service.get_model(db, model_id))

    @get("/{model_id:str}/architecture", responses=errors(409), summary="Family, sizes and hook points per layer")
    async def architecture(self, db: AsyncDatabase, model_id: str) -> Envelope[ModelArchitecture]:
        return ok(await service.architecture(db, model_id))

    @delete(
        "/{model_id:str}",
        responses=errors(409),
        status_code=200,
        summary="Delete a model and its files (409 while in use)",
    )
    async def delete_model(self, db: AsyncDatabase, layout: DataLayout, model_id: str) -> Envelope[Model]:
        return ok(await service.delete_model(db, layout, model_id))
