"""Import an SAE trained elsewhere as a finished training of a local model: from the Hub (JSON) or
an uploaded zip (multipart). The worker reads and checks the files (appliance.pipeline.sae.io.importing)."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Annotated, Any, Literal

import anyio
import msgspec
from litestar import Controller, Request, Response, post

from appliance.api import multipart, uploads
from appliance.api.apidoc import errors, form_fields
from appliance.api.queueing import AcceptedResponse, start_job
from appliance.api.state import ApiState, api_state
from appliance.api.validation import fetch_one
from appliance.contracts.sae_archive import check_declared
from appliance.errors import Conflict, ValidationError
from appliance.ids import new_id

HookType = Literal["residual", "mlp_in", "mlp", "attention"]


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


async def _queue(api: ApiState, model_id: str, params: dict[str, Any], training_id: str | None = None,
                 secret: str | None = None) -> Response[AcceptedResponse]:
    assert api.db is not None and api.jobs is not None
    model = await fetch_one(api.db, "models", "m", model_id, "model_id")
    if model["status"] != "ready" or not model["architecture"]:
        raise Conflict(f"Model {model['id']} is {model['status']}, not ready", details={"status": model["status"]})
    arch = msgspec.json.decode(model["architecture"])
    training_id, now = training_id or new_id("tr"), time.time()
    if params.get("upload"):
        # A zip bomb is refused now, from its declared sizes; the worker counts what it really writes.
        await anyio.to_thread.run_sync(check_declared, Path(params["upload"]), arch["d_model"],
                                       api.settings.data_dir / "trainings", api.settings.disk_reserve_mb)
    insert = (
        "INSERT INTO trainings (id, model_id, dataset_id, activation_id, layer, hook_type, encoder_type, config,"
        " status, total_steps, created_at, updated_at) VALUES (?, ?, '', NULL, ?, ?, 'sparse', ?, 'queued', 0, ?, ?)",
        (training_id, model["id"], params.get("layer") or 0, params.get("hook_type") or "residual",
         msgspec.json.encode({"source": "imported", "origin": params.get("repo_id") or "upload"}).decode(), now, now))
    return await start_job(api, "training.import", {
        **params, "training_id": training_id, "model_name": model["name"], "d_model": arch["d_model"],
        "hook_points": arch["hook_points"]}, "trainings", training_id, insert=insert, secret=secret)


class TrainingImportController(Controller):
    path = "/api/training/import"
    tags = ["training"]

    @post("/", responses=errors(404, 409), summary="Import a SAELens or sparsify SAE from the Hub for a local model")
    async def from_hub(self, request: Request, data: HubImport) -> Response[AcceptedResponse]:
        params = msgspec.to_builtins(data)
        secret = params.pop("hf_token", None)
        params.pop("model_id")
        return await _queue(api_state(request), data.model_id, params, secret=secret)

    @post("/upload", request_max_body_size=None, opt={**multipart.FILE_UPLOAD, **form_fields(UploadFields)}, responses=errors(404, 409),
          summary="Import an SAE from a zip (multipart field `file`; fields model_id, optional layer, hook_type)")
    async def upload(self, request: Request) -> Response[AcceptedResponse]:
        api = api_state(request)
        uploads.check_announced(request, api.settings)
        training_id = new_id("tr")
        folder = uploads.folder(api.settings, training_id)
        try:
            form = await multipart.receive(uploads.body(request), request.headers.get("content-type", ""), "file",
                                           folder / "sae.zip", api.settings.max_upload_bytes,
                                           uploads.space_check(api.settings))
            if form.path is None or not form.size:
                raise ValidationError("No file: send the SAE's zip in the form field `file`", details={"field": "file"})
            try:
                fields = msgspec.convert({k: v for k, v in form.fields.items() if v != ""}, UploadFields, strict=False)
            except msgspec.ValidationError as exc:
                raise ValidationError(f"Invalid form field: {exc}", details={"field": "body"}) from None
            return await _queue(api, fields.model_id, {"upload": str(form.path), "layer": fields.layer,
                                                       "hook_type": fields.hook_type}, training_id=training_id)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
