"""The rules of SAE trainings on the API side: which source a training reads, the job parameters it
runs with, what each status allows, and the row changes that go with each action.

A training and its job are created in one transaction (``AsyncJobStore.create`` with ``within``), so
no training is ever left queued without a job; a row's status change commits with its event.
"""

from __future__ import annotations

import io
import shutil
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import aiosqlite
import anyio
import msgspec

from appliance.config import Settings
from appliance.contracts.hyperparameters import (
    ARCHITECTURE_DEFAULTS,
    K_ARCHITECTURES,
    EncoderType,
    Hyperparameters,
    for_architecture,
)
from appliance.contracts.matryoshka import default_widths, widths_problem
from appliance.contracts.params.training import (
    EvaluateRun,
    EvaluationSpec,
    ExportMetadata,
    HookPoint,
    HookType,
    ImportRun,
    StreamSpec,
    TrainRun,
)
from appliance.contracts.sae_archive import check_declared
from appliance.contracts.special_tokens import GivenIds, check_given
from appliance.data import datasets as datasets_sql
from appliance.data import models as models_sql
from appliance.data import templates as templates_sql
from appliance.data import trainings as sql
from appliance.data.database import AsyncDatabase, Query, Row
from appliance.data.layout import DataLayout
from appliance.errors import Conflict, NotFound, ValidationError
from appliance.ids import new_id
from appliance.jobs.async_store import AsyncJobStore, Within
from appliance.jobs.records import Job
from appliance.services.common import get_or_404, named_row, refuse_if_busy, tokenizer_of
from appliance.services.jobs import start_job, with_row
from appliance.services.names import training_name
from appliance.timefmt import iso

EVAL_SAMPLES = 64  # held-out samples (after those the activation set used) for the spliced-model evaluation
BUSY = ("queued", "running")
FINISHED = ("completed", "stopped")


# -- requests -------------------------------------------------------------------------------------
class StartRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    # A stored activation set, or (without one) the model and dataset to stream activations from.
    activation_id: str | None = None
    model_id: str | None = None
    dataset_id: str | None = None
    context_length: Annotated[int, msgspec.Meta(ge=2, le=32768)] = 128  # streamed only
    max_samples: Annotated[int, msgspec.Meta(ge=1)] | None = None  # streamed only; None = the whole dataset
    # Streamed only (a stored set's own choice holds): leave special tokens' positions out of the
    # training and its held-out evaluation; the tokenizer's, or exactly ``special_token_ids``.
    exclude_special_tokens: bool = True
    special_token_ids: GivenIds | None = None
    layer: Annotated[int, msgspec.Meta(ge=0)]
    # Transcoders read the layer's MLP input and predict its output: their hook_type is "mlp_in".
    hook_type: HookType = "residual"
    encoder_type: EncoderType = "topk"
    hyperparameters: Hyperparameters = msgspec.field(default_factory=Hyperparameters)
    seed: Annotated[int, msgspec.Meta(ge=0, le=2**31 - 1)] = 0
    auto_save_interval: Annotated[int, msgspec.Meta(ge=0, le=10_000_000)] = 500


class EvaluateRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    # Splice on this dataset's samples (imported SAEs need one; trainings default to their own).
    dataset_id: str | None = None
    samples: Annotated[int, msgspec.Meta(ge=1, le=5000)] = EVAL_SAMPLES
    context_length: Annotated[int, msgspec.Meta(ge=2, le=32768)] = 128  # imported SAEs


class Checkpoint(msgspec.Struct):
    step: int
    tokens: int
    loss: float | None  # the training loss at ``step``; see loss_step
    saved_at: str
    # auto | user ("save now": kept outside MISTUDIO_KEEP_CHECKPOINTS) | pause | stop | requeue
    kind: str = "auto"
    held_out_loss: float | None = None  # the objective on held-out activations; pruning keeps the lowest
    # None: ``loss`` is the step's own. A checkpoint written before checkpoints recorded their loss, at a
    # step no metrics row was logged at, shows the loss logged nearest to it, at this step.
    loss_step: int | None = None


# -- what each state allows -----------------------------------------------------------------------
def is_imported(row: Row) -> bool:
    return bool(msgspec.json.decode(row["config"]).get("source") == "imported")


def actions(status: str, imported: bool = False) -> list[str]:
    """The actions the API accepts now for a training in ``status`` (named after the endpoints). The
    UI shows these instead of re-deriving the rules."""
    if status == "queued":
        return ["cancel"]
    if status == "running":
        return ["pause", "stop", "save_checkpoint", "cancel"]
    allowed = {
        "paused": ["resume", "stop", "cancel"],
        "completed": ["evaluate", "export"],
        "stopped": ["evaluate", "export"],
    }.get(status, [])
    if imported:
        return [a for a in allowed if a in ("evaluate", "export")] + ["delete"]
    if status in ("failed", "cancelled", "stopped", "completed"):
        allowed = [*allowed, "retry"]  # a completed run only from scratch
    return [*allowed, "load_checkpoint", "delete"]


# -- what a row shows -----------------------------------------------------------------------------
class Width(msgspec.Struct, frozen=True):
    d_in: int | None
    d_sae: int | None
    expansion_factor: float | None


def width(config: dict[str, Any]) -> Width:
    """The SAE's width as it was built: ``d_sae`` when the request named one, else expansion_factor × d_in
    (the one rule: pipeline.sae.base.sae_config), and the expansion factor that width is (d_sae / d_in), so
    a run started with ``d_sae`` never shows the form's default factor. A row written before ``d_in`` was
    recorded shows what its request said and None for what it cannot derive."""
    hp = config.get("hyperparameters") or {}
    d_in = config.get("d_in")
    d_sae = hp.get("d_sae") or config.get("d_sae")
    if d_in is None:
        return Width(None, d_sae, None if d_sae else hp.get("expansion_factor"))
    d_sae = d_sae or hp.get("expansion_factor", Hyperparameters().expansion_factor) * d_in
    ratio = d_sae / d_in
    return Width(d_in, d_sae, int(ratio) if ratio.is_integer() else round(ratio, 4))


def shown_config(config: dict[str, Any]) -> dict[str, Any]:
    """The row's config with its hyperparameters' width as built (``width``)."""
    if "hyperparameters" not in config:
        return config
    built = width(config)
    hp = {**config["hyperparameters"], "d_sae": built.d_sae, "expansion_factor": built.expansion_factor}
    return {**config, "hyperparameters": hp}


# -- reading --------------------------------------------------------------------------------------
async def get(db: AsyncDatabase, training_id: str) -> Row:
    return await named_row(db, "training", training_id)


async def list_all(db: AsyncDatabase) -> list[Row]:
    return await db.all(sql.list_all())


async def metrics(db: AsyncDatabase, training_id: str) -> tuple[Row, list[Row]]:
    row = await get(db, training_id)
    return row, await db.all(sql.metrics(row["id"]))


def metrics_csv(rows: list[Row]) -> str:
    lines = [",".join(sql.METRIC_COLUMNS)]
    lines += [",".join("" if r[c] is None else str(r[c]) for c in sql.METRIC_COLUMNS) for r in rows]
    return "\n".join(lines) + "\n"


class TrainingDefaults(Hyperparameters, kw_only=True):
    """The flat fields: a sparse SAE's defaults (the shape this answer had before the learning rate and
    the L1 coefficient came to depend on the architecture); ``by_encoder_type``: every architecture's."""

    by_encoder_type: dict[EncoderType, Hyperparameters]


def defaults() -> TrainingDefaults:
    each = {kind: for_architecture(Hyperparameters(), kind) for kind in ARCHITECTURE_DEFAULTS}
    return TrainingDefaults(**msgspec.structs.asdict(each["sparse"]), by_encoder_type=each)


# -- starting -------------------------------------------------------------------------------------
@dataclass
class _Source:
    what: str  # for messages: "activation set" or "model"
    model_id: str
    dataset_id: str
    activation_id: str | None
    model: Row | None  # the models row (None if it was deleted)
    hooks: list[HookPoint]
    d_model: int
    context_length: int
    samples_used: int  # the evaluation reads samples after these
    parameters: int = 0
    # Stored sets: the ids their extraction left out (resolved); streamed: None, the worker resolves.
    excluded: list[int] | None = None
    exclude_special_tokens: bool = True
    dataset_path: str = ""  # what the export names the dataset: its Hub repo id, else its name
    tokenizer: str = ""  # the tokenizer its token ids came from


def _dataset_path(dataset: Row | None, dataset_id: str) -> str:
    if dataset is None:
        return dataset_id
    return dataset["repo_id"] if dataset["source"] == "huggingface" and dataset["repo_id"] else dataset["name"]


def _model_name(model: Row | None, model_id: str) -> str:
    """The model as a loader can resolve it: its Hub repo id when it came from the Hub, else its name."""
    if model is None:
        return model_id
    return model["repo_id"] if model["source"] == "huggingface" and model["repo_id"] else model["name"]


def _ready(row: Row, kind: str) -> None:
    if row["status"] != "ready":
        raise Conflict(f"{kind} {row['id']} is {row['status']}, not ready", details={"status": row["status"]})


async def _source(db: AsyncDatabase, data: StartRequest) -> _Source:
    if data.activation_id is not None:
        act = await named_row(db, "activation set", data.activation_id)
        _ready(act, "Activation set")
        manifest = msgspec.json.decode(act["manifest"])
        model = await db.one(models_sql.get(act["model_id"]))
        used = msgspec.json.decode(act["config"]).get("max_samples") or manifest["samples"]
        # Sets extracted before the setting kept every token.
        excluded = manifest.get("excluded_token_ids", [])
        return _Source(
            "activation set",
            act["model_id"],
            act["dataset_id"],
            act["id"],
            model,
            msgspec.convert(manifest["hooks"], list[HookPoint]),
            manifest["d_model"],
            manifest["context_length"],
            used,
            excluded=excluded,
            exclude_special_tokens=manifest.get("exclude_special_tokens", False),
            dataset_path=_dataset_path(await db.one(datasets_sql.get(act["dataset_id"])), act["dataset_id"]),
            tokenizer=manifest.get("tokenizer", ""),
        )
    if data.model_id is None or data.dataset_id is None:
        raise ValidationError(
            "Give an activation_id, or a model_id and dataset_id to stream activations from",
            details={"field": "activation_id"},
        )
    model = await named_row(db, "model", data.model_id)
    dataset = await named_row(db, "dataset", data.dataset_id)
    _ready(model, "Model")
    _ready(dataset, "Dataset")
    arch = msgspec.json.decode(model["architecture"])
    if arch.get("context_length") and data.context_length > arch["context_length"]:
        raise ValidationError(
            f"context_length is at most {arch['context_length']} for this model", details={"field": "context_length"}
        )
    check_given(data.special_token_ids, arch.get("vocab_size"))
    return _Source(
        "model",
        model["id"],
        dataset["id"],
        None,
        model,
        msgspec.convert(arch["hook_points"], list[HookPoint]),
        arch["d_model"],
        data.context_length,
        data.max_samples or (dataset["num_samples"] or 0),
        arch["parameters"],
        exclude_special_tokens=data.exclude_special_tokens,
        dataset_path=_dataset_path(dataset, dataset["id"]),
        tokenizer=tokenizer_of(model),
    )


def _hooks(data: StartRequest, source: _Source) -> tuple[HookPoint, HookPoint | None]:
    """The hook the SAE reads and, for transcoders, the one it predicts."""
    hooks = {(h.layer, h.type): h for h in source.hooks}
    transcoder = data.encoder_type == "transcoder"
    hook = hooks.get((data.layer, "mlp_in" if transcoder else data.hook_type))
    target = hooks.get((data.layer, "mlp")) if transcoder else None
    if hook is None or (transcoder and target is None):
        have = ", ".join(f"layer {layer} {kind}" for layer, kind in sorted(hooks))
        wanted = f"layer {data.layer} mlp_in and mlp" if transcoder else f"layer {data.layer} {data.hook_type}"
        raise ValidationError(f"The {source.what} has no {wanted}; it has: {have}", details={"field": "layer"})
    if hook.after_affine:
        # Its tensor is not what the name means in TransformerLens (the value before the norm's affine).
        again = "extract it again" if source.activation_id else "add the model again (delete it, then register it)"
        raise ValidationError(
            f"The {source.what}'s mlp_in was read after the layer norm's affine by an earlier version: {again}",
            details={"field": "activation_id" if source.activation_id else "model_id"},
        )
    if not transcoder and hook.type == "mlp_in":
        raise ValidationError(
            "mlp_in is a transcoder's input; pick encoder_type 'transcoder' or another hook",
            details={"field": "hook_type"},
        )
    return hook, target


def _run(training_id: str, data: StartRequest, source: _Source, hook: HookPoint, target: HookPoint | None) -> TrainRun:
    model = source.model
    evaluation = stream = None
    # A stored set's resolved ids, or the request's choice for the worker to resolve (the same way).
    given = data.special_token_ids if source.excluded is None else source.excluded
    if model is not None and model["status"] == "ready":
        evaluation = EvaluationSpec(
            model_path=model["path"],
            precision=model["precision"],
            tokenizer=tokenizer_of(model),
            dataset_id=source.dataset_id,
            module=hook.module,
            context_length=source.context_length,
            samples=EVAL_SAMPLES,
            skip_samples=source.samples_used,
            reads_input=data.encoder_type == "transcoder",
            source=hook if data.encoder_type == "transcoder" else None,
            exclude_special_tokens=source.exclude_special_tokens,
            special_token_ids=given,
        )
    if source.activation_id is None:
        assert model is not None  # a streamed source is a ready model
        stream = StreamSpec(
            model_path=model["path"],
            precision=model["precision"],
            tokenizer=tokenizer_of(model),
            dataset_id=source.dataset_id,
            hook_point=hook,
            target_point=target,
            context_length=data.context_length,
            max_samples=data.max_samples,
            parameters=source.parameters,
            exclude_special_tokens=source.exclude_special_tokens,
            special_token_ids=given,
        )
    metadata = ExportMetadata(
        model_name=_model_name(model, source.model_id),
        model_id=source.model_id,
        context_size=source.context_length,
        dataset_path=source.dataset_path or source.dataset_id,
        training_id=training_id,
        dataset_id=source.dataset_id,
        tokenizer=source.tokenizer,
        # A streamed run's ids are resolved by its worker, which sets them here before the export.
        exclude_special_tokens=(source.excluded or False) if source.exclude_special_tokens else False,
    )
    return TrainRun(
        training_id=training_id,
        activation_id=source.activation_id,
        hook_name=hook.name,
        target_hook_name=target.name if target else None,
        encoder_type=data.encoder_type,
        d_in=source.d_model,
        hyperparameters=data.hyperparameters,
        seed=data.seed,
        auto_save_interval=data.auto_save_interval,
        metadata=metadata,
        evaluation=evaluation,
        stream=stream,
    )


def _within(*queries: Callable[[str], Query]) -> Within:
    """Statements that commit with the job's own creation or change; each is built from the job's id."""

    async def within(conn: aiosqlite.Connection, job_id: str) -> None:
        for build in queries:
            await conn.execute(*build(job_id))

    return within


def _check_architecture(encoder_type: EncoderType, hp: Hyperparameters, d_sae: int) -> None:
    """The settings that only mean something for some architectures, against the SAE's width."""
    if encoder_type in K_ARCHITECTURES and hp.k > d_sae:
        raise ValidationError("k must not exceed the number of latents", details={"field": "hyperparameters.k"})
    if hp.target_l0 is not None:
        if encoder_type in K_ARCHITECTURES:
            raise ValidationError(
                f"target_l0 is for the architectures with a sparsity coefficient; {encoder_type} sets its L0 with k",
                details={"field": "hyperparameters.target_l0"},
            )
        if hp.target_l0 >= d_sae:
            raise ValidationError(
                f"target_l0 must be below the number of latents ({d_sae})",
                details={"field": "hyperparameters.target_l0"},
            )
    widths = hp.matryoshka_widths
    if widths is None:
        return
    if encoder_type != "matryoshka_batchtopk":
        raise ValidationError(
            "matryoshka_widths is for encoder_type 'matryoshka_batchtopk'",
            details={"field": "hyperparameters.matryoshka_widths"},
        )
    # Each prefix of the dictionary reconstructs on its own: the groups must nest and end at the whole.
    problem = widths_problem(widths, d_sae)
    if problem is not None:
        raise ValidationError(problem, details={"field": "hyperparameters.matryoshka_widths"})


async def start(db: AsyncDatabase, jobs: AsyncJobStore, data: StartRequest) -> Job:
    """Check the request against its source, then create the training row and its job: one commit."""
    # What the request leaves to the architecture is fixed now: the job and the row record the numbers.
    data = msgspec.structs.replace(data, hyperparameters=for_architecture(data.hyperparameters, data.encoder_type))
    source = await _source(db, data)
    hook, target = _hooks(data, source)
    hp = data.hyperparameters
    d_sae = hp.d_sae or hp.expansion_factor * source.d_model
    _check_architecture(data.encoder_type, hp, d_sae)
    if data.encoder_type == "matryoshka_batchtopk" and hp.matryoshka_widths is None:
        # Recorded like the other defaults: the feature browser reads the groups from the row.
        hp = msgspec.structs.replace(hp, matryoshka_widths=default_widths(d_sae))
        data = msgspec.structs.replace(data, hyperparameters=hp)
    training_id = new_id("tr")
    run = _run(training_id, data, source, hook, target)
    config: dict[str, Any] = {
        "hyperparameters": msgspec.to_builtins(hp),
        "d_in": source.d_model,  # with the hyperparameters, the SAE's width as built (width)
        "seed": data.seed,
        "auto_save_interval": data.auto_save_interval,
        "source": "stored" if run.stream is None else "streamed",
    }
    if run.stream is not None:
        config.update(
            context_length=data.context_length,
            max_samples=data.max_samples,
            exclude_special_tokens=data.exclude_special_tokens,
            special_token_ids=data.special_token_ids,
        )
    else:  # what the set left out; a streamed run's worker records its own when it starts
        config.update(excluded_token_ids=source.excluded or [])
    row = sql.insert(
        training_id,
        model_id=source.model_id,
        dataset_id=source.dataset_id,
        activation_id=source.activation_id,
        layer=data.layer,
        hook_type=hook.type,
        encoder_type=data.encoder_type,
        config=config,
        total_steps=hp.total_steps,
        now=time.time(),
    )
    return await jobs.create(
        "training.run",
        run,
        target=("training", training_id),
        within=with_row("trainings", training_id, row),
    )


def train_run(params: dict[str, Any]) -> TrainRun:
    """A training job's parameters as stored. Jobs written before the evaluation became a typed
    optional value spelled "no evaluation" as an empty object."""
    if params.get("evaluation") == {}:
        params = {**params, "evaluation": None}
    return msgspec.convert(params, TrainRun)


# -- controls -------------------------------------------------------------------------------------
async def control(db: AsyncDatabase, jobs: AsyncJobStore, training_id: str, what: str) -> Row:
    """Ask the running job to pause, stop or save a checkpoint (the worker relays it within ~0.1 s)."""
    row = await get(db, training_id)
    if not row["job_id"]:
        raise Conflict(f"Training {row['id']} has no job yet")
    await jobs.request(row["job_id"], what)
    return await get(db, training_id)


async def save_now(db: AsyncDatabase, jobs: AsyncJobStore, training_id: str) -> Row:
    row = await get(db, training_id)
    if row["status"] != "running":
        raise Conflict(
            f"Training {row['id']} is {row['status']}: checkpoints are saved while it runs (pausing saves one too)",
            details={"status": row["status"]},
        )
    return await control(db, jobs, training_id, "save")


def _requeued(training_id: str, *first: Query, **how: bool) -> Within:
    """The row queued again under the job, and its event, in the job's own transaction (after the
    statements ``first``)."""
    return _within(
        *(lambda _, query=query: query for query in first),
        lambda job_id: sql.requeue(training_id, job_id, **how),
        lambda job_id: sql.updated_event(training_id, "queued", job_id),
    )


async def resume(db: AsyncDatabase, jobs: AsyncJobStore, training_id: str, control: str | None = None) -> Row:
    """Queue a paused training again from its checkpoint; ``control`` ("stop"): asked of its job from the start."""
    row = await get(db, training_id)
    if row["status"] != "paused" or not row["job_id"]:
        raise Conflict(f"Training {row['id']} is {row['status']}, not paused", details={"status": row["status"]})
    job = await jobs.get(row["job_id"])
    if job.status == "paused":
        await jobs.resume(job.id, within=_requeued(row["id"]), control=control)
    else:  # its job ended (a checkpoint was loaded after it finished): a new job continues the run
        await jobs.create(
            "training.run",
            train_run(job.params),
            target=("training", row["id"]),
            within=_requeued(row["id"]),
            control=control,
        )
    return await get(db, training_id)


async def stop(db: AsyncDatabase, jobs: AsyncJobStore, training_id: str) -> Row:
    """Finish now: a running training ends its steps, then exports and evaluates. A paused one ends the
    same way where it paused: the worker holds its model and SAE, so its job runs again, told to stop
    before its first step (appliance.pipeline.sae.training.loop)."""
    row = await get(db, training_id)
    if row["status"] == "paused" and not is_imported(row):
        return await resume(db, jobs, training_id, control="stop")
    return await control(db, jobs, training_id, "stop")


async def retry(
    db: AsyncDatabase, jobs: AsyncJobStore, layout: DataLayout, training_id: str, from_scratch: bool
) -> Job:
    row = await get(db, training_id)
    if is_imported(row):
        raise Conflict(
            f"Training {row['id']} is an imported SAE: import it again instead", details={"status": row["status"]}
        )
    allowed = ("failed", "cancelled", "stopped", "completed") if from_scratch else ("failed", "cancelled", "stopped")
    if row["status"] not in allowed or not row["job_id"]:
        hint = "" if from_scratch else " (from_scratch starts any finished training again)"
        raise Conflict(
            f"Training {row['id']} is {row['status']}: nothing to retry{hint}", details={"status": row["status"]}
        )
    previous = await jobs.get(row["job_id"])
    # From scratch, the old metrics go in the new job's own transaction: a refused job keeps them.
    shutil.rmtree(layout.training(row["id"]) if from_scratch else layout.export(row["id"]), ignore_errors=True)
    first = (sql.delete_metrics(row["id"]),) if from_scratch else ()
    return await jobs.create(
        "training.run",
        train_run(previous.params),
        target=("training", row["id"]),
        within=_requeued(row["id"], *first, from_scratch=from_scratch, clear_error=True),
    )


async def evaluate(db: AsyncDatabase, jobs: AsyncJobStore, training_id: str, data: EvaluateRequest) -> Job:
    row = await get(db, training_id)
    if row["status"] not in FINISHED or not row["job_id"]:
        raise Conflict(
            f"Training {row['id']} is {row['status']}: only finished SAEs are evaluated",
            details={"status": row["status"]},
        )
    model = await get_or_404(db, models_sql.get(row["model_id"]), "model", row["model_id"], "model_id")
    if model["status"] != "ready" or not model["architecture"]:
        raise Conflict(f"Model {model['id']} is {model['status']}, not ready", details={"status": model["status"]})
    arch = msgspec.json.decode(model["architecture"])
    train = None if is_imported(row) else train_run((await jobs.get(row["job_id"])).params)
    spec = train.evaluation if train else None
    if data.dataset_id is not None or spec is None:
        if data.dataset_id is None:
            raise ValidationError("Name a dataset_id to evaluate this SAE on", details={"field": "dataset_id"})
        dataset = await named_row(db, "dataset", data.dataset_id)
        if dataset["status"] != "ready":
            raise Conflict(f"Dataset {dataset['id']} is {dataset['status']}, not ready")
        point = next(p for p in arch["hook_points"] if p["layer"] == row["layer"] and p["type"] == row["hook_type"])
        spec = EvaluationSpec(
            model_path=model["path"],
            precision=model["precision"],
            tokenizer=tokenizer_of(model),
            dataset_id=dataset["id"],
            module=point["module"],
            context_length=data.context_length,
            samples=data.samples,
            reads_input=row["encoder_type"] == "transcoder",
            source=msgspec.convert(point, HookPoint) if row["encoder_type"] == "transcoder" else None,
        )
    spec = msgspec.structs.replace(spec, samples=data.samples)
    run = EvaluateRun(
        training_id=row["id"], train=train, evaluation=spec, parameters=arch["parameters"], precision=model["precision"]
    )
    return await jobs.create("training.evaluate", run, target=("training", row["id"]))


# -- checkpoints and files ------------------------------------------------------------------------
def _step_of(folder: Path) -> int:
    return int(folder.name.split("_")[1].split(".")[0])


def _loss_at(step: int, saved: float | None, logged: dict[int, float]) -> tuple[float | None, int | None]:
    """A checkpoint's loss: its own (recorded when saved, or logged at its step), else the loss logged
    nearest to its step (the earlier on a tie) and that step."""
    if saved is not None:
        return saved, None
    if step in logged:
        return logged[step], None
    if not logged:
        return None, None
    nearest = min(logged, key=lambda s: (abs(s - step), s))
    return logged[nearest], nearest


async def checkpoints(db: AsyncDatabase, layout: DataLayout, training_id: str) -> list[Checkpoint]:
    """The whole checkpoints on disk, oldest first, with the training loss of their step (``_loss_at``)."""
    row = await get(db, training_id)
    losses = {r["step"]: r["loss"] for r in await db.all(sql.losses(row["id"])) if r["loss"] is not None}
    found = []
    for folder in sorted(layout.checkpoints(row["id"]).glob("step_*")):
        if folder.name.endswith(".partial"):
            continue
        try:
            info = msgspec.json.decode((folder / "info.json").read_bytes())
        except (OSError, msgspec.DecodeError):  # pruned by the running training meanwhile
            continue
        loss, loss_step = _loss_at(info["step"], info.get("loss"), losses)
        found.append(
            Checkpoint(
                info["step"],
                info["tokens"],
                loss,
                iso(info["saved_at"]) or "",
                info.get("kind", "auto"),
                info.get("held_out_loss"),
                loss_step,
            )
        )
    return found


def _checkpoint(layout: DataLayout, row: Row, step: int) -> Path:
    folder = layout.checkpoints(row["id"]) / f"step_{step:08d}"
    if not (folder / "info.json").is_file():
        raise NotFound(f"Training {row['id']} has no checkpoint at step {step}", details={"step": step})
    return folder


async def load_checkpoint(db: AsyncDatabase, layout: DataLayout, training_id: str, step: int) -> Row:
    """Go back to ``step``: later checkpoints, metrics and the export go; the run is paused there."""
    row = await get(db, training_id)
    if row["status"] in BUSY:
        raise Conflict(
            f"Training {row['id']} is {row['status']}: pause or stop it first", details={"status": row["status"]}
        )
    _checkpoint(layout, row, step)
    for folder in layout.checkpoints(row["id"]).glob("step_*"):
        if _step_of(folder) > step:
            shutil.rmtree(folder, ignore_errors=True)
    shutil.rmtree(layout.export(row["id"]), ignore_errors=True)
    await db.write(
        sql.delete_metrics(row["id"], step),
        sql.back_to_checkpoint(row["id"], step),
        sql.updated_event(row["id"], "paused", None),
    )
    return await get(db, training_id)


async def delete_checkpoint(db: AsyncDatabase, layout: DataLayout, training_id: str, step: int) -> list[Checkpoint]:
    row = await get(db, training_id)
    folder = layout.checkpoints(row["id"]) / f"step_{step:08d}"
    if not folder.is_dir():
        raise NotFound(f"Training {row['id']} has no checkpoint at step {step}", details={"step": step})
    shutil.rmtree(folder)
    return await checkpoints(db, layout, training_id)


async def export_zip(db: AsyncDatabase, layout: DataLayout, training_id: str) -> tuple[Row, bytes]:
    """The SAELens folder as a zip whose entries sit in a folder named after the training."""
    row = await get(db, training_id)
    folder = layout.export(row["id"])
    if not (folder / "cfg.json").is_file():
        raise Conflict(
            f"Training {row['id']} is {row['status']}: the export is written when it finishes",
            details={"status": row["status"]},
        )
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for file in sorted(folder.iterdir()):
            archive.write(file, f"{row['id']}/{file.name}")
    return row, buffer.getvalue()


async def delete(db: AsyncDatabase, layout: DataLayout, training_id: str) -> Row:
    """The training, its metrics, features and steering presets (which name its features), then its files."""
    row = await get(db, training_id)
    name = training_name(row["encoder_type"], row["layer"], row["hook_type"], msgspec.json.decode(row["config"]))
    refuse_if_busy(f'Training "{name}"', row["job_id"], row["status"], BUSY)
    await db.write(sql.delete(row["id"]), templates_sql.delete_steering_presets_of(row["id"]))
    shutil.rmtree(layout.training(row["id"]), ignore_errors=True)
    return row


# -- imports --------------------------------------------------------------------------------------
@dataclass
class ImportRequest:
    """What an import names, from the Hub (``repo_id``) or an upload (``upload``, already on disk)."""

    model_id: str
    upload: Path | None = None
    repo_id: str | None = None
    subfolder: str | None = None
    revision: str | None = None
    layer: int | None = None
    hook_type: HookType | None = None


async def start_import(
    db: AsyncDatabase,
    jobs: AsyncJobStore,
    settings: Settings,
    request: ImportRequest,
    training_id: str | None = None,
    secret: str | None = None,
) -> Job:
    """Queue an import as a new training row and its job (one commit). ``secret`` (a Hub token) is
    stored for the worker under the training's id, and removed again if the job is not created."""
    model = await named_row(db, "model", request.model_id)
    if model["status"] != "ready" or not model["architecture"]:
        raise Conflict(f"Model {model['id']} is {model['status']}, not ready", details={"status": model["status"]})
    arch = msgspec.json.decode(model["architecture"])
    training_id = training_id or new_id("tr")
    layout = settings.layout
    if request.upload is not None:
        # A zip bomb is refused now, from its declared sizes; the worker counts what it really writes.
        await anyio.to_thread.run_sync(
            check_declared, request.upload, arch["d_model"], layout.trainings, settings.disk_reserve_mb
        )
    run = ImportRun(
        training_id=training_id,
        model_name=model["name"],
        d_model=arch["d_model"],
        hook_points=msgspec.convert(arch["hook_points"], list[HookPoint]),
        upload=str(request.upload) if request.upload else None,
        repo_id=request.repo_id,
        subfolder=request.subfolder,
        revision=request.revision,
        layer=request.layer,
        hook_type=request.hook_type,
    )
    row = sql.insert(
        training_id,
        model_id=model["id"],
        dataset_id="",
        activation_id=None,
        layer=request.layer or 0,
        hook_type=request.hook_type or "residual",
        encoder_type="sparse",
        config={"source": "imported", "origin": request.repo_id or "upload"},
        total_steps=0,
        now=time.time(),
    )
    return await start_job(jobs, layout, "training.import", run, "trainings", training_id, insert=row, secret=secret)
