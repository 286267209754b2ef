"""The rules of steered generation, behind ``appliance.api.steering``: when an SAE can steer, where
its interventions act, and each feature's strength (the unit of its coefficient). The method and the
metrics are in ``appliance.pipeline.steering.generate``."""

from __future__ import annotations

import random
import statistics
from dataclasses import dataclass
from typing import Any, Literal

import msgspec

from appliance.contracts.params.models import ModelArchitecture
from appliance.contracts.params.steering import GenerateParams, SteeredFeature
from appliance.data import features as sql
from appliance.data import models
from appliance.data.database import AsyncDatabase, Row
from appliance.errors import Conflict, NotFound, ValidationError
from appliance.jobs.async_store import AsyncJobStore
from appliance.jobs.records import Job
from appliance.services.common import get_or_404, named_row
from appliance.services.features import ExtractionConfig, architecture, hook_point
from appliance.services.jobs import run_and_wait

# Two generations of up to 2,048 tokens each on a small CPU take minutes; curl waits this long.
SYNC_TIMEOUT_S = 900.0


@dataclass(frozen=True)
class Steerable:
    """An SAE that can steer: its training and model rows, the model's architecture, its width."""

    training: Row
    model: Row
    architecture: ModelArchitecture
    d_sae: int
    tokenizer: str


@dataclass(frozen=True)
class Wanted:
    """One feature of a request: which, how hard, how."""

    index: int
    coefficient: float
    mode: Literal["add", "clamp", "ablate"]


async def steerable(db: AsyncDatabase, training_id: str) -> Steerable:
    """The SAE, once it can steer: training finished, features extracted (their typical activations
    scale the coefficients), model ready."""
    training = await named_row(db, "training", training_id)
    if training["status"] not in ("completed", "stopped"):  # a stopped run exports what it learnt, too
        raise Conflict(
            f"Training {training_id} is {training['status']}: only a finished SAE can steer",
            details={"status": training["status"]},
        )
    extraction = await db.one(sql.get_extraction(training_id))
    if extraction is None or extraction["status"] != "ready":
        raise Conflict(
            f"Extract the features of {training_id} first (POST /api/features/extract): steering "
            "coefficients are in units of each feature's typical max activation",
            details={"training_id": training_id},
        )
    model = await get_or_404(db, models.get(training["model_id"]), "model", training["model_id"], "model_id")
    if model["status"] != "ready":
        raise Conflict(f"Model {model['id']} is {model['status']}", details={"model_id": model["id"]})
    d_sae = int(await db.scalar(sql.count(training_id)))
    tokenizer = msgspec.json.decode(extraction["config"], type=ExtractionConfig).tokenizer
    return Steerable(training, model, architecture(model), d_sae, tokenizer)


async def _features(db: AsyncDatabase, training_id: str, d_sae: int, wanted: list[Wanted]) -> list[SteeredFeature]:
    """The requested features with their strengths and labels (each named once, each in the SAE)."""
    indices = [f.index for f in wanted]
    if len(set(indices)) < len(indices):
        raise ValidationError("Each feature may appear once", details={"field": "features"})
    missing = [i for i in indices if i >= d_sae]
    if missing:
        raise NotFound(
            f"The SAE has {d_sae} features (0-{d_sae - 1}); no feature {missing[0]}",
            details={"field": "features", "index": missing[0]},
        )
    rows = {r["idx"]: r for r in await db.all(sql.strengths_of(training_id, indices))} if indices else {}
    # A feature that never fired on the evaluation text has no typical strength of its own: it
    # takes the median of the live ones, so +1 still means "a typical feature's strong firing".
    fallback = None
    out = []
    for f in wanted:
        row = rows.get(f.index)
        strength = float(row["max_activation"]) if row is not None else 0.0
        if strength <= 0:
            if fallback is None:
                live = [r[0] for r in await db.all(sql.live_max_activations(training_id))]
                fallback = statistics.median(live) if live else 1.0
            strength = fallback
        out.append(SteeredFeature(f.index, f.coefficient, f.mode, strength, row["label"] if row is not None else ""))
    return out


async def generation(
    db: AsyncDatabase,
    training_id: str,
    features: list[Wanted],
    intervention_layer: int | None,
    prompt: str,
    temperature: float,
    top_p: float,
    max_tokens: int,
    seed: int | None,
    stream: bool,
) -> GenerateParams:
    """The job's parameters, refusing what cannot steer: a layer the model lacks, another layer for an
    SAE that does not read the residual stream, clamp or ablate away from the SAE's own layer."""
    facts = await steerable(db, training_id)
    training, model, arch = facts.training, facts.model, facts.architecture
    point = hook_point(arch, training)
    layer = training["layer"] if intervention_layer is None else intervention_layer
    if layer >= arch.layers:
        raise ValidationError(f"The model has layers 0-{arch.layers - 1}", details={"field": "intervention_layer"})
    if layer != training["layer"]:
        if training["hook_type"] != "residual":
            raise ValidationError(
                f"This SAE reads the {training['hook_type']} of layer {training['layer']}: only "
                "residual-stream SAEs can steer at another layer",
                details={"field": "intervention_layer"},
            )
        if any(f.mode != "add" for f in features):
            raise ValidationError(
                "clamp and ablate read the SAE's own layer; at another layer only 'add' applies",
                details={"field": "features"},
            )
    same_module = layer == training["layer"]
    return GenerateParams(
        training_id=training["id"],
        model_path=model["path"],
        precision=model["precision"],
        parameters=arch.parameters,
        tokenizer=facts.tokenizer,
        hook_point=point,
        target_module=point.module if same_module else f"{arch.layers_module}.{layer}",
        same_module=same_module,
        intervention_layer=layer,
        prompt=prompt,
        features=await _features(db, training["id"], facts.d_sae, features),
        temperature=temperature,
        top_p=top_p,
        max_tokens=max_tokens,
        seed=seed if seed is not None else random.randrange(2**31),
        stream=stream,
    )


async def start(jobs: AsyncJobStore, params: GenerateParams) -> Job:
    """A streamed generation: the tokens arrive on the job's event stream."""
    return await jobs.create("steering.generate", params)


async def run(jobs: AsyncJobStore, params: GenerateParams) -> Any:
    """A generation answered in place, when it is done."""
    return await run_and_wait(jobs, "steering.generate", params, timeout_s=SYNC_TIMEOUT_S)
