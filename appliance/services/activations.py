"""The rules of activation sets on the API side: what a set looks like to clients, which actions its
state allows, how an extraction request is checked against the model's architecture and becomes a
set and its job in one transaction, and what deleting one must not break."""

from __future__ import annotations

import shutil
import time
from typing import Annotated, Any

import msgspec
from anyio import to_thread

from appliance.contracts.params.activations import ExtractParams
from appliance.contracts.params.models import HookPoint, HookType, ModelArchitecture
from appliance.contracts.special_tokens import GivenIds, check_given
from appliance.data import activation_sets
from appliance.data.database import AsyncDatabase, Row
from appliance.data.layout import DataLayout
from appliance.errors import Conflict, ValidationError
from appliance.ids import new_id
from appliance.jobs.async_store import AsyncJobStore
from appliance.jobs.records import Job
from appliance.services.common import named_row, refuse_if_busy, refuse_if_used, row_error, tokenizer_of
from appliance.services.jobs import start_job
from appliance.services.models import architecture_of, model_row
from appliance.services.names import activation_set_name
from appliance.timefmt import iso


# -- what clients see ------------------------------------------------------------------------------
class ActivationSet(msgspec.Struct):
    id: str
    model_id: str
    dataset_id: str
    status: str
    config: dict[str, Any]  # the extraction request, as sent
    manifest: dict[str, Any] | None
    size_bytes: int | None
    job_id: str | None
    error: dict[str, str] | None
    created_at: str
    updated_at: str
    actions: list[str] = []
    # The token ids whose positions the set leaves out (resolved by the extraction; empty until then,
    # and for sets extracted before the setting or with it off).
    excluded_token_ids: list[int] = []


# -- what clients send -----------------------------------------------------------------------------
class ExtractRequest(msgspec.Struct, forbid_unknown_fields=True):
    dataset_id: str
    layers: Annotated[list[Annotated[int, msgspec.Meta(ge=0, le=1000)]], msgspec.Meta(min_length=1, max_length=200)]
    hook_types: Annotated[list[HookType], msgspec.Meta(min_length=1, max_length=4)] = msgspec.field(
        default_factory=lambda: ["residual"]
    )
    batch_size: Annotated[int, msgspec.Meta(ge=1, le=512)] = 8
    max_samples: Annotated[int, msgspec.Meta(ge=1, le=100_000_000)] | None = 1000
    context_length: Annotated[int, msgspec.Meta(ge=2, le=32768)] = 128
    # Leave special tokens' positions (BOS/EOS/PAD...) out of the set: the tokenizer's, or exactly
    # ``special_token_ids`` when given.
    exclude_special_tokens: bool = True
    special_token_ids: GivenIds | None = None


# -- allowed actions -------------------------------------------------------------------------------
def activation_set_actions(status: str) -> list[str]:
    """While a set is extracted only its job can be cancelled; a finished or failed one is deleted."""
    return ["cancel"] if status == "extracting" else ["delete"]


# -- rows to Structs -------------------------------------------------------------------------------
def _set(row: Row) -> ActivationSet:
    manifest = msgspec.json.decode(row["manifest"]) if row["manifest"] else None
    return ActivationSet(
        id=row["id"],
        model_id=row["model_id"],
        dataset_id=row["dataset_id"],
        status=row["status"],
        config=msgspec.json.decode(row["config"]),
        manifest=manifest,
        size_bytes=row["size_bytes"],
        job_id=row["job_id"],
        error=row_error(row),
        created_at=iso(row["created_at"]) or "",
        updated_at=iso(row["updated_at"]) or "",
        actions=activation_set_actions(row["status"]),
        excluded_token_ids=(manifest or {}).get("excluded_token_ids", []),
    )


async def _row(db: AsyncDatabase, activation_id: str) -> Row:
    return await named_row(db, "activation set", activation_id)


# -- reading ---------------------------------------------------------------------------------------
async def list_sets(db: AsyncDatabase) -> list[ActivationSet]:
    return [_set(row) for row in await db.all(activation_sets.list_all())]


async def get_set(db: AsyncDatabase, activation_id: str) -> ActivationSet:
    return _set(await _row(db, activation_id))


# -- extracting ------------------------------------------------------------------------------------
def chosen_hook_points(arch: ModelArchitecture, data: ExtractRequest) -> list[HookPoint]:
    """The model's hook points the request names, in the model's order; a layer or hook type the model
    does not have, or a context longer than it reads, is the client's mistake (400)."""
    bad = sorted({layer for layer in data.layers if layer >= arch.layers})
    if bad:
        raise ValidationError(
            f"The model has layers 0-{arch.layers - 1}; no layer {bad[0]}",
            details={"field": "layers", "layers": arch.layers},
        )
    if arch.context_length and data.context_length > arch.context_length:
        raise ValidationError(
            f"context_length is at most {arch.context_length} for this model", details={"field": "context_length"}
        )
    wanted = {(layer, kind) for layer in data.layers for kind in data.hook_types}
    points = [p for p in arch.hook_points if (p.layer, p.type) in wanted]
    missing = wanted - {(p.layer, p.type) for p in points}
    if missing:
        layer, kind = sorted(missing)[0]
        raise ValidationError(f"Layer {layer} has no {kind} hook point", details={"field": "hook_types"})
    if any(p.after_affine for p in points):
        # Its tensor is not what the name means in TransformerLens (the value before the norm's affine).
        raise ValidationError(
            "This model's mlp_in hook points were read by an earlier version (after the layer norm's affine): "
            "add the model again (delete it, then register it) to extract mlp_in",
            details={"field": "hook_types"},
        )
    return points


async def extract(
    db: AsyncDatabase, jobs: AsyncJobStore, layout: DataLayout, model_id: str, data: ExtractRequest
) -> Job:
    """A set (extracting) and the job that fills it, in one transaction. The job gets everything it
    needs from the model's and the dataset's rows here, so it reads no other row."""
    model = await model_row(db, model_id)
    dataset = await named_row(db, "dataset", data.dataset_id)
    arch = architecture_of(model)
    if model["status"] != "ready" or arch is None:
        raise Conflict(f"Model {model['id']} is {model['status']}, not ready", details={"status": model["status"]})
    if dataset["status"] != "ready":
        raise Conflict(
            f"Dataset {dataset['id']} is {dataset['status']}, not ready", details={"status": dataset["status"]}
        )
    if not arch.d_model:
        raise Conflict(
            f"Model {model['id']} has no known hidden size (d_model): its activations cannot be sized",
            details={"field": "d_model"},
        )
    points = chosen_hook_points(arch, data)
    check_given(data.special_token_ids, arch.vocab_size)
    activation_id = new_id("act")
    params = ExtractParams(
        activation_id=activation_id,
        model_id=model["id"],
        model_path=model["path"],
        precision=model["precision"],
        tokenizer=tokenizer_of(model),
        dataset_id=dataset["id"],
        hook_points=points,
        d_model=arch.d_model,
        parameters=arch.parameters,
        batch_size=data.batch_size,
        max_samples=data.max_samples,
        context_length=data.context_length,
        exclude_special_tokens=data.exclude_special_tokens,
        special_token_ids=data.special_token_ids,
    )
    insert = activation_sets.insert(
        activation_id,
        model_id=model["id"],
        dataset_id=dataset["id"],
        config=msgspec.json.encode(data).decode(),
        job_id=None,
        now=time.time(),
    )
    return await start_job(jobs, layout, "activations.extract", params, "activation_sets", activation_id, insert)


# -- deleting --------------------------------------------------------------------------------------
async def delete_set(db: AsyncDatabase, layout: DataLayout, activation_id: str) -> ActivationSet:
    """Delete the row and then its shards; refused while it is extracted or a training reads it."""
    row = await _row(db, activation_id)
    what = f'Activation set "{activation_set_name(msgspec.json.decode(row["config"]))}"'
    refuse_if_busy(what, row["job_id"], row["status"], ("extracting",))
    refuse_if_used(what, await db.all(activation_sets.dependents(row["id"])))
    await db.write(activation_sets.delete(row["id"]))
    await to_thread.run_sync(lambda: shutil.rmtree(layout.activations(row["id"]), ignore_errors=True))
    return _set(row)
