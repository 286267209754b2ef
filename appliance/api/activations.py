"""Activation sets: extraction from a model over a dataset (started from the model), list, detail, delete."""

from __future__ import annotations

import shutil
import time
from typing import Annotated, Any, Literal

import msgspec
from litestar import Controller, Request, Response, delete, get, post

from appliance.api.apidoc import errors
from appliance.api.envelope import Meta, meta
from appliance.api.queueing import AcceptedResponse, start_job
from appliance.api.state import api_state
from appliance.api.validation import fetch_one
from appliance.errors import Conflict, ValidationError
from appliance.ids import new_id
from appliance.timefmt import iso


class ExtractRequest(msgspec.Struct, forbid_unknown_fields=True):
    dataset_id: str
    layers: Annotated[list[Annotated[int, msgspec.Meta(ge=0, le=1000)]], msgspec.Meta(min_length=1, max_length=200)]
    hook_types: Annotated[list[Literal["residual", "mlp_in", "mlp", "attention"]], msgspec.Meta(min_length=1, max_length=4)] = \
        msgspec.field(default_factory=lambda: ["residual"])
    batch_size: Annotated[int, msgspec.Meta(ge=1, le=512)] = 8
    max_samples: Annotated[int, msgspec.Meta(ge=1, le=100_000_000)] | None = 1000
    context_length: Annotated[int, msgspec.Meta(ge=2, le=32768)] = 128


class ActivationSet(msgspec.Struct):
    id: str
    model_id: str
    dataset_id: str
    status: str
    config: dict[str, Any]
    manifest: dict[str, Any] | None
    size_bytes: int | None
    job_id: str | None
    error: dict[str, str] | None
    created_at: str
    updated_at: str


class ActivationResponse(msgspec.Struct):
    data: ActivationSet
    meta: Meta


class ActivationListResponse(msgspec.Struct):
    data: list[ActivationSet]
    meta: Meta



def _set(row: Any) -> ActivationSet:
    return ActivationSet(
        id=row["id"], model_id=row["model_id"], dataset_id=row["dataset_id"], status=row["status"],
        config=msgspec.json.decode(row["config"]),
        manifest=msgspec.json.decode(row["manifest"]) if row["manifest"] else None, size_bytes=row["size_bytes"],
        job_id=row["job_id"],
        error={"code": row["error_code"], "message": row["error_message"] or ""} if row["error_code"] else None,
        created_at=iso(row["created_at"]) or "", updated_at=iso(row["updated_at"]) or "")


class ExtractionController(Controller):
    path = "/api/models"
    tags = ["activations"]

    @post("/{model_id:str}/extract-activations", responses=errors(409), summary="Extract activations of chosen layers over a dataset")
    async def extract(self, request: Request, model_id: str, data: ExtractRequest) -> Response[AcceptedResponse]:
        api = api_state(request)
        assert api.db is not None and api.jobs is not None
        model = await fetch_one(api.db, "models", "m", model_id, "model_id")
        dataset = await fetch_one(api.db, "datasets", "ds", data.dataset_id, "dataset_id")
        if model["status"] != "ready" or not model["architecture"]:
            raise Conflict(f"Model {model['id']} is {model['status']}, not ready", details={"status": model["status"]})
        if dataset["status"] != "ready":
            raise Conflict(f"Dataset {dataset['id']} is {dataset['status']}, not ready",
                           details={"status": dataset["status"]})
        arch = msgspec.json.decode(model["architecture"])
        bad = sorted({layer for layer in data.layers if layer >= arch["layers"]})
        if bad:
            raise ValidationError(f"The model has layers 0-{arch['layers'] - 1}; no layer {bad[0]}",
                                  details={"field": "layers", "layers": arch["layers"]})
        if arch.get("context_length") and data.context_length > arch["context_length"]:
            raise ValidationError(f"context_length is at most {arch['context_length']} for this model",
                                  details={"field": "context_length"})
        wanted = {(layer, kind) for layer in data.layers for kind in data.hook_types}
        points = [p for p in arch["hook_points"] if (p["layer"], p["type"]) in wanted]
        missing = wanted - {(p["layer"], p["type"]) for p in points}
        if missing:
            layer, kind = sorted(missing)[0]
            raise ValidationError(f"Layer {layer} has no {kind} hook point", details={"field": "hook_types"})
        activation_id, now = new_id("act"), time.time()
        config = msgspec.to_builtins(data)
        insert = ("INSERT INTO activation_sets (id, model_id, dataset_id, status, config, created_at, updated_at)"
                  " VALUES (?, ?, ?, 'extracting', ?, ?, ?)",
                  (activation_id, model["id"], dataset["id"], msgspec.json.encode(config).decode(), now, now))
        return await start_job(api, "activations.extract", {
            "activation_id": activation_id, "model_id": model["id"], "model_path": model["path"],
            "precision": model["precision"], "tokenizer": "demo" if model["source"] == "demo" else model["id"],
            "dataset_id": dataset["id"], "hook_points": points, "d_model": arch["d_model"],
            "parameters": arch["parameters"], "batch_size": data.batch_size, "max_samples": data.max_samples,
            "context_length": data.context_length}, "activation_sets", activation_id, insert=insert)


class ActivationsController(Controller):
    path = "/api/activations"
    tags = ["activations"]

    @get("/", summary="Activation sets, newest first")
    async def list_sets(self, request: Request) -> ActivationListResponse:
        db = api_state(request).db
        assert db is not None
        rows = await db.execute_fetchall("SELECT * FROM activation_sets ORDER BY created_at DESC")
        return ActivationListResponse([_set(r) for r in rows], meta())

    @get("/{activation_id:str}", summary="One activation set with its manifest")
    async def get_set(self, request: Request, activation_id: str) -> ActivationResponse:
        db = api_state(request).db
        return ActivationResponse(_set(await fetch_one(db, "activation_sets", "act", activation_id, "activation_id")), meta())

    @delete("/{activation_id:str}", responses=errors(409), status_code=200, summary="Delete an activation set and its shards")
    async def delete_set(self, request: Request, activation_id: str) -> ActivationResponse:
        api = api_state(request)
        assert api.db is not None
        row = await fetch_one(api.db, "activation_sets", "act", activation_id, "activation_id")
        if row["status"] == "extracting":
            raise Conflict(f"Activation set {row['id']} is being extracted by job {row['job_id']}: cancel it first",
                           details={"job_id": row["job_id"]})
        used = await api.db.execute_fetchall("SELECT id FROM trainings WHERE activation_id = ?", (row["id"],))
        if used:
            raise Conflict(f"Activation set {row['id']} is used by training {used[0]['id']}: delete that first",
                           details={"training_id": used[0]["id"]})
        async with api.db_lock:
            await api.db.execute("DELETE FROM activation_sets WHERE id = ?", (row["id"],))
        shutil.rmtree(api.settings.data_dir / "activations" / row["id"], ignore_errors=True)
        return ActivationResponse(_set(row), meta())
