"""Steering: ``POST /api/steering/generate`` (unsteered and steered text from one request; the
method and the metrics are in appliance/pipeline/steering/generate.py). Presets are in steering_presets.py.

A plain request answers with both texts and the metrics when they are done (curl); with
``stream: true`` it answers 202 with the job, and the tokens arrive on the event stream
(``GET /api/events?topics=job:<id>``) as ``steering.token``, then ``steering.completed``.
Generation runs on the worker's interactive lane, so it is served while a training runs.
"""

from __future__ import annotations

import random
import statistics
from typing import Annotated, Any, Literal

import msgspec
from litestar import Controller, Request, Response, post

from appliance.api.apidoc import accepted_too, errors
from appliance.api.envelope import Meta, meta
from appliance.api.queueing import accepted, run_and_wait
from appliance.api.state import ApiState, api_state
from appliance.api.validation import fetch_one
from appliance.errors import Conflict, NotFound, ValidationError

# Two generations of up to 2,048 tokens each on a small CPU take minutes; curl waits this long.
SYNC_TIMEOUT_S = 900.0


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


class Envelope(msgspec.Struct):
    data: Any
    meta: Meta


async def steerable(api: ApiState, training_id: str) -> dict[str, Any]:
    """The SAE's training, model and architecture, once it can steer: training finished, features
    extracted (their typical activations scale the coefficients), model ready."""
    assert api.db is not None
    training = await fetch_one(api.db, "trainings", "tr", training_id, "training_id")
    if training["status"] not in ("completed", "stopped"):  # a stopped run exports what it learnt, too
        raise Conflict(f"Training {training_id} is {training['status']}: only a finished SAE can steer",
                       details={"status": training["status"]})
    extraction = await api.db.execute_fetchall("SELECT status, config FROM feature_extractions WHERE training_id = ?",
                                               (training_id,))
    if not extraction or extraction[0]["status"] != "ready":
        raise Conflict(f"Extract the features of {training_id} first (POST /api/features/extract): steering "
                       "coefficients are in units of each feature's typical max activation",
                       details={"training_id": training_id})
    model = await fetch_one(api.db, "models", "m", training["model_id"], "model_id")
    if model["status"] != "ready":
        raise Conflict(f"Model {model['id']} is {model['status']}", details={"model_id": model["id"]})
    d_sae = (await api.db.execute_fetchall("SELECT count(*) FROM features WHERE training_id = ?",
                                           (training_id,)))[0][0]
    return {"training": training, "model": model, "architecture": msgspec.json.decode(model["architecture"]),
            "d_sae": d_sae, "tokenizer": msgspec.json.decode(extraction[0]["config"])["tokenizer"]}


async def _features(api: ApiState, training_id: str, d_sae: int, wanted: list[FeatureIn]) -> list[dict[str, Any]]:
    assert api.db is not None
    indices = [f.index for f in wanted]
    if len(set(indices)) < len(indices):
        raise ValidationError("Each feature may appear once", details={"field": "features"})
    missing = [i for i in indices if i >= d_sae]
    if missing:
        raise NotFound(f"The SAE has {d_sae} features (0-{d_sae - 1}); no feature {missing[0]}",
                       details={"field": "features", "index": missing[0]})
    rows = {}
    if indices:
        marks = ",".join("?" * len(indices))
        rows = {r["idx"]: r for r in await api.db.execute_fetchall(
            f"SELECT idx, max_activation, COALESCE(name, llm_label, auto_label) AS label FROM features"
            f" WHERE training_id = ? AND idx IN ({marks})", (training_id, *indices))}
    # A feature that never fired on the evaluation text has no typical strength of its own: it
    # takes the median of the live ones, so +1 still means "a typical feature's strong firing".
    fallback = None
    out = []
    for f in wanted:
        row = rows.get(f.index)
        strength = float(row["max_activation"]) if row is not None else 0.0
        if strength <= 0:
            if fallback is None:
                live = [r[0] for r in await api.db.execute_fetchall(
                    "SELECT max_activation FROM features WHERE training_id = ? AND max_activation > 0", (training_id,))]
                fallback = statistics.median(live) if live else 1.0
            strength = fallback
        out.append({"index": f.index, "coefficient": f.coefficient, "mode": f.mode, "strength": strength,
                    "label": row["label"] if row is not None else ""})
    return out


class SteeringController(Controller):
    tags = ["steering"]

    @post("/api/steering/generate", responses={**errors(404, 409, 502, 503), **accepted_too()}, status_code=200,
          summary="Unsteered and steered generations from one prompt and seed, with comparison metrics")
    async def generate(self, request: Request, data: GenerateRequest) -> Response[Any]:
        api = api_state(request)
        facts = await steerable(api, data.training_id)
        training, model, arch = facts["training"], facts["model"], facts["architecture"]
        point = next(p for p in arch["hook_points"]
                     if p["layer"] == training["layer"] and p["type"] == training["hook_type"])
        layer = training["layer"] if data.intervention_layer is None else data.intervention_layer
        if layer >= arch["layers"]:
            raise ValidationError(f"The model has layers 0-{arch['layers'] - 1}", details={"field": "intervention_layer"})
        if layer != training["layer"]:
            if training["hook_type"] != "residual":
                raise ValidationError(f"This SAE reads the {training['hook_type']} of layer {training['layer']}: only "
                                      "residual-stream SAEs can steer at another layer",
                                      details={"field": "intervention_layer"})
            if any(f.mode != "add" for f in data.features):
                raise ValidationError("clamp and ablate read the SAE's own layer; at another layer only 'add' applies",
                                      details={"field": "features"})
        same_module = layer == training["layer"]
        params = {
            "training_id": training["id"], "model_path": model["path"], "precision": model["precision"],
            "parameters": arch["parameters"], "tokenizer": facts["tokenizer"], "hook_point": point,
            "target_module": point["module"] if same_module else f"{arch['layers_module']}.{layer}",
            "same_module": same_module, "intervention_layer": layer, "prompt": data.prompt,
            "features": await _features(api, training["id"], facts["d_sae"], data.features),
            "temperature": data.temperature, "top_p": data.top_p, "max_tokens": data.max_tokens,
            "seed": data.seed if data.seed is not None else random.randrange(2**31), "stream": data.stream}
        if data.stream:
            assert api.jobs is not None
            return accepted(await api.jobs.create("steering.generate", params))
        result = await run_and_wait(api, "steering.generate", params, timeout_s=SYNC_TIMEOUT_S)
        return Response(Envelope(result, meta()))
