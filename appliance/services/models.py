"""The rules of models on the API side: what a model looks like to clients, which actions its state
allows, how a Hub download or a folder import becomes a row and its job in one transaction, and what
deleting one must not break."""

from __future__ import annotations

import shutil
import time
from typing import Annotated

import msgspec
from anyio import to_thread

from appliance.api.validation import safe_path
from appliance.contracts.params.models import ModelArchitecture, ModelDownloadParams, ModelImportParams
from appliance.contracts.precision import PRECISIONS, PrecisionSupport, capabilities, check, estimates
from appliance.data import models
from appliance.data.database import AsyncDatabase, Row
from appliance.data.layout import DataLayout
from appliance.device.platform import PlatformInfo
from appliance.errors import Conflict, ValidationError
from appliance.ids import new_id
from appliance.jobs.async_store import AsyncJobStore
from appliance.jobs.records import Job
from appliance.services.common import named_row, refuse_if_used, row_error
from appliance.services.jobs import start_job
from appliance.timefmt import iso

Precision = Annotated[str, msgspec.Meta(pattern="^(" + "|".join(PRECISIONS) + ")$")]


# -- what clients see ------------------------------------------------------------------------------
class Model(msgspec.Struct):
    id: str
    name: str
    source: str
    repo_id: str | None
    revision: str | None
    precision: str
    status: str
    error: dict[str, str] | None
    job_id: str | None
    size_bytes: int | None
    family: str | None
    layers: int | None
    d_model: int | None
    parameters: int | None
    memory_mb: dict[str, float] | None  # per precision, a planning figure
    created_at: str
    updated_at: str
    actions: list[str] = []


class Capabilities(msgspec.Struct):
    device: str
    precisions: list[PrecisionSupport]


# -- what clients send -----------------------------------------------------------------------------
class DownloadRequest(msgspec.Struct, forbid_unknown_fields=True):
    repo_id: Annotated[str, msgspec.Meta(pattern=r"^([A-Za-z0-9][\w.-]{0,95}/)?[A-Za-z0-9][\w.-]{0,95}$")]
    precision: Precision = "fp32"
    # Write-only: kept in a 0600 file for the job, never stored with the model or returned.
    hf_token: Annotated[str, msgspec.Meta(min_length=1, max_length=500)] | None = None
    revision: Annotated[str, msgspec.Meta(pattern=r"^[\w.\-/]{1,100}$")] | None = None
    trust_remote_code: bool = False


class ImportRequest(msgspec.Struct, forbid_unknown_fields=True):
    path: Annotated[str, msgspec.Meta(min_length=1, max_length=1000)]  # a folder under <data dir>/imports
    precision: Precision = "fp32"
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=200)] | None = None


# -- allowed actions -------------------------------------------------------------------------------
def model_actions(status: str) -> list[str]:
    """What the API accepts for a model in ``status``: a ready one shows its architecture, has its
    activations extracted or is deleted; a failed one is only deleted; while it downloads or loads,
    only its job can be cancelled."""
    if status == "ready":
        return ["architecture", "extract", "delete"]
    if status == "error":
        return ["delete"]
    return ["cancel"]


# -- rows to Structs -------------------------------------------------------------------------------
def architecture_of(row: Row) -> ModelArchitecture | None:
    """The architecture the worker stored once the model loaded; None before."""
    return msgspec.json.decode(row["architecture"], type=ModelArchitecture) if row["architecture"] else None


def _model(row: Row) -> Model:
    arch = architecture_of(row)
    return Model(
        id=row["id"],
        name=row["name"],
        source=row["source"],
        repo_id=row["repo_id"],
        revision=row["revision"],
        precision=row["precision"],
        status=row["status"],
        error=row_error(row),
        job_id=row["job_id"],
        size_bytes=row["size_bytes"],
        family=arch.family if arch else None,
        layers=arch.layers if arch else None,
        d_model=arch.d_model if arch else None,
        parameters=arch.parameters if arch else None,
        memory_mb=estimates(arch.parameters if arch else None),
        created_at=iso(row["created_at"]) or "",
        updated_at=iso(row["updated_at"]) or "",
        actions=model_actions(row["status"]),
    )


# -- reading ---------------------------------------------------------------------------------------
async def model_row(db: AsyncDatabase, model_id: str) -> Row:
    """The model's row (NOT_FOUND naming ``model_id`` if there is none)."""
    return await named_row(db, "model", model_id)


async def list_models(db: AsyncDatabase) -> list[Model]:
    return [_model(row) for row in await db.all(models.list_all())]


async def get_model(db: AsyncDatabase, model_id: str) -> Model:
    return _model(await model_row(db, model_id))


async def architecture(db: AsyncDatabase, model_id: str) -> ModelArchitecture:
    """Family, sizes and hook points; 409 until the worker has loaded the model and read them."""
    row = await model_row(db, model_id)
    arch = architecture_of(row)
    if arch is None:
        raise Conflict(
            f"Model {row['id']} is {row['status']}: its architecture is read once it is loaded",
            details={"status": row["status"]},
        )
    return arch


def device_capabilities(platform: PlatformInfo) -> Capabilities:
    return Capabilities("cuda" if platform.cuda_available else "cpu", capabilities(platform))


# -- making one ------------------------------------------------------------------------------------
async def download(jobs: AsyncJobStore, layout: DataLayout, platform: PlatformInfo, data: DownloadRequest) -> Job:
    """A model row (downloading) and the job that fetches and loads it, in one transaction; the Hub
    token goes to a secret file the job reads, never to the row or the job's parameters."""
    check(platform, data.precision)
    model_id = new_id("m")
    path = str(layout.model(model_id))
    params = ModelDownloadParams(
        model_id=model_id,
        repo_id=data.repo_id,
        path=path,
        precision=data.precision,
        revision=data.revision,
        trust_remote_code=data.trust_remote_code,
    )
    insert = models.insert(
        model_id,
        name=data.repo_id,
        source="huggingface",
        repo_id=data.repo_id,
        revision=data.revision,
        precision=data.precision,
        status="downloading",
        path=path,
        job_id=None,
        now=time.time(),
    )
    return await start_job(jobs, layout, "model.download", params, "models", model_id, insert, secret=data.hf_token)


async def import_folder(jobs: AsyncJobStore, layout: DataLayout, platform: PlatformInfo, data: ImportRequest) -> Job:
    """A model row (loading) and the job that copies a folder from the imports folder and loads it.
    The folder is checked here, where a wrong path is still the client's mistake."""
    check(platform, data.precision)
    layout.imports.mkdir(parents=True, exist_ok=True)
    source = safe_path(layout.imports, data.path, "path")
    if not (source / "config.json").is_file():
        raise ValidationError(
            f"{data.path!r} is not a model folder (no config.json) in {layout.imports}", details={"field": "path"}
        )
    if not any(source.glob("*.safetensors")) and not any(source.glob("*.bin")):
        raise ValidationError(f"{data.path!r} has no .safetensors or .bin weights", details={"field": "path"})
    model_id = new_id("m")
    path = str(layout.model(model_id))
    params = ModelImportParams(model_id=model_id, source=str(source), path=path, precision=data.precision)
    insert = models.insert(
        model_id,
        name=data.name or source.name,
        source="local",
        precision=data.precision,
        status="loading",
        path=path,
        job_id=None,
        now=time.time(),
    )
    return await start_job(jobs, layout, "model.import", params, "models", model_id, insert)


# -- deleting --------------------------------------------------------------------------------------
async def delete_model(db: AsyncDatabase, layout: DataLayout, model_id: str) -> Model:
    """Delete the row and then the model's folder; refused while a job works on or with it, or while
    an activation set or a training is built on it."""
    row = await model_row(db, model_id)
    active = await db.all(models.active_jobs(row["id"]))
    if active:
        raise Conflict(
            f'Model "{row["name"]}" is in use by a running job ({active[0]["kind"]} {active[0]["id"]}):'
            " cancel it first.",
            details={"job_id": active[0]["id"]},
        )
    refuse_if_used(f'Model "{row["name"]}"', await db.all(models.dependents(row["id"])))
    await db.write(models.delete(row["id"]))
    if row["source"] != "demo":  # the demo model's files ship with the code
        await to_thread.run_sync(lambda: shutil.rmtree(layout.model(row["id"]), ignore_errors=True))
    return _model(row)
