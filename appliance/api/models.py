"""Models: the demo model, Hub downloads, list, detail, architecture, capabilities, delete."""

from __future__ import annotations

import shutil
import time
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, Response, delete, get, post

from appliance.api.apidoc import errors
from appliance.api.envelope import Meta, meta
from appliance.api.queueing import AcceptedResponse, accepted, start_job
from appliance.api.seeds import create_demo_model
from appliance.api.state import api_state
from appliance.api.validation import check_id, safe_path
from appliance.contracts.precision import PRECISIONS, PrecisionSupport, capabilities, check, estimates
from appliance.errors import Conflict, NotFound, ValidationError
from appliance.ids import new_id
from appliance.timefmt import iso


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


class Architecture(msgspec.Struct):
    family: str
    layers: int
    d_model: int | None
    heads: int | None
    kv_heads: int | None
    d_mlp: int | None
    vocab_size: int | None
    context_length: int | None
    parameters: int
    hook_points: list[dict[str, Any]]
    class_name: str = msgspec.field(name="class", default="")
    layers_module: str = ""


class DownloadRequest(msgspec.Struct, forbid_unknown_fields=True):
    repo_id: Annotated[str, msgspec.Meta(pattern=r"^([A-Za-z0-9][\w.-]{0,95}/)?[A-Za-z0-9][\w.-]{0,95}$")]
    precision: Annotated[str, msgspec.Meta(pattern="^(" + "|".join(PRECISIONS) + ")$")] = "fp32"
    hf_token: Annotated[str, msgspec.Meta(min_length=1, max_length=500)] | None = None
    revision: Annotated[str, msgspec.Meta(pattern=r"^[\w.\-/]{1,100}$")] | None = None
    trust_remote_code: bool = False


class ImportRequest(msgspec.Struct, forbid_unknown_fields=True):
    path: Annotated[str, msgspec.Meta(min_length=1, max_length=1000)]  # a folder under <data dir>/imports
    precision: Annotated[str, msgspec.Meta(pattern="^(" + "|".join(PRECISIONS) + ")$")] = "fp32"
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=200)] | None = None


class Capabilities(msgspec.Struct):
    device: str
    precisions: list[PrecisionSupport]


class ModelResponse(msgspec.Struct):
    data: Model
    meta: Meta


class ModelListResponse(msgspec.Struct):
    data: list[Model]
    meta: Meta


class ArchitectureResponse(msgspec.Struct):
    data: Architecture
    meta: Meta


class CapabilitiesResponse(msgspec.Struct):
    data: Capabilities
    meta: Meta



def _model(row: Any) -> Model:
    arch = msgspec.json.decode(row["architecture"]) if row["architecture"] else {}
    return Model(
        id=row["id"], name=row["name"], source=row["source"], repo_id=row["repo_id"], revision=row["revision"],
        precision=row["precision"], status=row["status"],
        error={"code": row["error_code"], "message": row["error_message"] or ""} if row["error_code"] else None,
        job_id=row["job_id"], size_bytes=row["size_bytes"], family=arch.get("family"), layers=arch.get("layers"),
        d_model=arch.get("d_model"), parameters=arch.get("parameters"), memory_mb=estimates(arch.get("parameters")),
        created_at=iso(row["created_at"]) or "", updated_at=iso(row["updated_at"]) or "")


class ModelsController(Controller):
    path = "/api/models"
    tags = ["models"]

    async def _row(self, request: Request, model_id: str) -> Any:
        db = api_state(request).db
        assert db is not None
        rows = await db.execute_fetchall("SELECT * FROM models WHERE id = ?", (check_id(model_id, "m", "model_id"),))
        if not rows:
            raise NotFound(f"No model {model_id!r}", details={"model_id": model_id})
        return rows[0]

    @get("/", summary="Models, newest first")
    async def list_models(self, request: Request) -> ModelListResponse:
        db = api_state(request).db
        assert db is not None
        rows = await db.execute_fetchall("SELECT * FROM models ORDER BY created_at DESC")
        return ModelListResponse([_model(r) for r in rows], meta())

    @get("/capabilities", summary="Precisions this device can load models in, and why not")
    async def capabilities(self, request: Request) -> CapabilitiesResponse:
        platform = api_state(request).platform
        assert platform is not None
        return CapabilitiesResponse(Capabilities("cuda" if platform.cuda_available else "cpu",
                                                 capabilities(platform)), meta())

    @post("/download", summary="Download a model from the Hugging Face Hub (safetensors preferred)")
    async def download(self, request: Request, data: DownloadRequest) -> Response[AcceptedResponse]:
        api = api_state(request)
        assert api.db is not None and api.jobs is not None and api.platform is not None
        check(api.platform, data.precision)
        model_id, now = new_id("m"), time.time()
        path = api.settings.data_dir / "models" / model_id
        return await start_job(api, "model.download", {
            "model_id": model_id, "repo_id": data.repo_id, "revision": data.revision, "precision": data.precision,
            "path": str(path), "trust_remote_code": data.trust_remote_code}, "models", model_id, insert=(
            "INSERT INTO models (id, name, source, repo_id, revision, precision, status, path, created_at,"
            " updated_at) VALUES (?, ?, 'huggingface', ?, ?, ?, 'downloading', ?, ?, ?)",
            (model_id, data.repo_id, data.repo_id, data.revision, data.precision, str(path), now, now)),
            secret=data.hf_token)

    @post("/import", summary="Import a model folder from <data dir>/imports (config.json + weights)")
    async def import_folder(self, request: Request, data: ImportRequest) -> Response[AcceptedResponse]:
        api = api_state(request)
        assert api.db is not None and api.jobs is not None and api.platform is not None
        check(api.platform, data.precision)
        imports = api.settings.data_dir / "imports"
        imports.mkdir(parents=True, exist_ok=True)
        source = safe_path(imports, data.path, "path")
        if not (source / "config.json").is_file():
            raise ValidationError(f"{data.path!r} is not a model folder (no config.json) in {imports}",
                                  details={"field": "path"})
        if not any(source.glob("*.safetensors")) and not any(source.glob("*.bin")):
            raise ValidationError(f"{data.path!r} has no .safetensors or .bin weights", details={"field": "path"})
        model_id, now = new_id("m"), time.time()
        path = api.settings.data_dir / "models" / model_id
        return await start_job(api, "model.import", {"model_id": model_id, "source": str(source), "path": str(path),
                                                     "precision": data.precision}, "models", model_id, insert=(
            "INSERT INTO models (id, name, source, precision, status, path, created_at, updated_at)"
            " VALUES (?, ?, 'local', ?, 'loading', ?, ?, ?)",
            (model_id, data.name or source.name, data.precision, str(path), now, now)))

    @post("/demo", responses=errors(409), summary="(Re)register the built-in demo model (409 naming it while one is registered)")
    async def demo(self, request: Request) -> Response[AcceptedResponse]:
        # The check for an existing demo model is made inside the transaction that creates the new one,
        # so concurrent requests register one model: the others get 409 naming it.
        job = await create_demo_model(api_state(request))
        return accepted(job)

    @get("/{model_id:str}", summary="One model")
    async def get_model(self, request: Request, model_id: str) -> ModelResponse:
        return ModelResponse(_model(await self._row(request, model_id)), meta())

    @get("/{model_id:str}/architecture", responses=errors(409), summary="Family, sizes and hook points per layer")
    async def architecture(self, request: Request, model_id: str) -> ArchitectureResponse:
        row = await self._row(request, model_id)
        if not row["architecture"]:
            raise Conflict(f"Model {row['id']} is {row['status']}: its architecture is read once it is loaded",
                           details={"status": row["status"]})
        return ArchitectureResponse(msgspec.json.decode(row["architecture"], type=Architecture), meta())

    @delete("/{model_id:str}", responses=errors(409), status_code=200, summary="Delete a model and its files (409 while in use)")
    async def delete_model(self, request: Request, model_id: str) -> ModelResponse:
        row = await self._row(request, model_id)
        api = api_state(request)
        assert api.db is not None
        active = await api.db.execute_fetchall(
            "SELECT id FROM jobs WHERE status IN ('queued', 'running', 'paused') AND"
            " ((target_type = 'model' AND target_id = ?) OR json_extract(params, '$.model_id') = ?)",
            (row["id"], row["id"]))
        if active:
            raise Conflict(f"Model {row['id']} is in use by job {active[0]['id']}: cancel it first",
                           details={"job_id": active[0]["id"]})
        used = await api.db.execute_fetchall(
            "SELECT id FROM activation_sets WHERE model_id = ? UNION ALL SELECT id FROM trainings WHERE model_id = ?",
            (row["id"], row["id"]))
        if used:
            raise Conflict(f"Model {row['id']} is used by {used[0]['id']} (an activation set or training): "
                           "delete that first", details={"used_by": used[0]["id"]})
        async with api.db_lock:
            await api.db.execute("DELETE FROM models WHERE id = ?", (row["id"],))
        if row["source"] != "demo":  # the demo model's files ship with the code
            shutil.rmtree(api.settings.data_dir / "models" / row["id"], ignore_errors=True)
        return ModelResponse(_model(row), meta())
