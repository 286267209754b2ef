"""Import an SAE trained elsewhere as a finished training of a local model: from the Hub (JSON) or
an uploaded zip (multipart). The worker reads and checks the files (appliance.pipeline.sae.io.importing);
the rules of queueing one are appliance.services.training's."""

from __future__ import annotations

import shutil
from typing import Annotated

import msgspec
from litestar import Controller, Request, Response, post

from appliance.api import multipart, uploads
from appliance.api.apidoc import errors, form_fields
from appliance.api.queueing import AcceptedResponse, accepted
from appliance.config import Settings
from appliance.contracts.params.training import HookType
from appliance.data.database import AsyncDatabase
from appliance.errors import ValidationError
from appliance.ids import new_id
from appliance.jobs.async_store import AsyncJobStore
from appliance.services import training as service


class HubImport(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    model_id: str
    repo_id: Annotated[str, msgspec.Meta(pattern=r"^([A-Za-z0-9][\w.-]{0,95}/)?[A-Za-z0-9][\w.-]{0,95}$")]
    # The folder of the SAE inside the repo (SAELens and sparsify repos hold one per hook point).
    subfolder: Annotated[str, msgspec.Meta(pattern=r"^[\w.\-/]{1,300}$")] | None = None
    revision: Annotated[str, msgspec.Meta(pattern=r"^[\w.\-/]{1,200}$")] | None = None
    hf_token: Annotated[str, msgspec.Meta(max_length=400)] | None = None  # write-only
    layer: Annotated[int, msgspec.Meta(ge=0, le=1000)] | None = None
    hook_type: HookType | None = None


class UploadFields(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    model_id: str
    layer: Annotated[int, msgspec.Meta(ge=0, le=1000)] | None = None
    hook_type: HookType | None = None


class TrainingImportController(Controller):
    path = "/api/training/import"
    tags = ["training"]

    @post("/", responses=errors(404, 409), summary="Import a SAELens or sparsify SAE from the Hub for a local model")
    async def from_hub(
        self, db: AsyncDatabase, jobs: AsyncJobStore, settings: Settings, data: HubImport
    ) -> Response[AcceptedResponse]:
        wanted = service.ImportRequest(
            model_id=data.model_id,
            repo_id=data.repo_id,
            subfolder=data.subfolder,
            revision=data.revision,
            layer=data.layer,
            hook_type=data.hook_type,
        )
        return accepted(await service.start_import(db, jobs, settings, wanted, secret=data.hf_token))

    @post(
        "/upload",
        request_max_body_size=None,
        opt={**multipart.FILE_UPLOAD, **form_fields(UploadFields)},
        responses=errors(404, 409),
        summary="Import an SAE from a zip (multipart field `file`; fields model_id, optional layer, hook_type)",
    )
    async def upload(
        self, request: Request, db: AsyncDatabase, jobs: AsyncJobStore, settings: Settings
    ) -> Response[AcceptedResponse]:
        uploads.check_announced(request, settings)
        training_id = new_id("tr")
        folder = uploads.folder(settings, training_id)
        try:
            form = await multipart.receive(
                uploads.body(request),
                request.headers.get("content-type", ""),
                "file",
                folder / "sae.zip",
                settings.max_upload_bytes,
                uploads.space_check(settings),
            )
            if form.path is None or not form.size:
                raise ValidationError("No file: send the SAE's zip in the form field `file`", details={"field": "file"})
            try:
                fields = msgspec.convert({k: v for k, v in form.fields.items() if v != ""}, UploadFields, strict=False)
            except msgspec.ValidationError as exc:
                raise ValidationError(f"Invalid form field: {exc}", details={"field": "body"}) from None
            wanted = service.ImportRequest(
                model_id=fields.model_id, upload=form.path, layer=fields.layer, hook_type=fields.hook_type
            )
            return accepted(await service.start_import(db, jobs, settings, wanted, training_id=training_id))
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
