"""SAE trainings: start from an activation set, list, detail, metrics (JSON or CSV), pause, resume,
stop, delete, and the SAELens export as a zip."""

from __future__ import annotations

import io
import shutil
import time
import zipfile
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import msgspec
from litestar import Controller, Request, Response, delete, get, post
from litestar.params import Parameter

from appliance.api.apidoc import alternatives, errors
from appliance.api.envelope import Meta, meta
from appliance.api.queueing import AcceptedResponse, accepted, start_job
from appliance.api.state import api_state
from appliance.api.validation import check_id, fetch_one
from appliance.contracts.hyperparameters import Hyperparameters
from appliance.errors import Conflict, NotFound, ValidationError
from appliance.ids import new_id
from appliance.timefmt import iso

EVAL_SAMPLES = 64  # held-out samples (after those the activation set used) for the spliced-model evaluation
METRIC_COLUMNS = ("step", "tokens", "loss", "mse", "sparsity_loss", "l0", "dead_latents", "explained_variance",
                  "learning_rate", "activations_per_s", "memory_mb")


class StartRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    # A stored activation set, or (without one) the model and dataset to stream activations from.
    activation_id: str | None = None
    model_id: str | None = None
    dataset_id: str | None = None
    context_length: Annotated[int, msgspec.Meta(ge=2, le=32768)] = 128  # streamed only
    max_samples: Annotated[int, msgspec.Meta(ge=1)] | None = None  # streamed only; None = the whole dataset
    layer: Annotated[int, msgspec.Meta(ge=0)]
    # Transcoders read the layer's MLP input and predict its output: their hook_type is "mlp_in".
    hook_type: Literal["residual", "mlp_in", "mlp", "attention"] = "residual"
    encoder_type: Literal["sparse", "topk", "jumprelu", "skip", "transcoder"] = "topk"
    hyperparameters: Hyperparameters = msgspec.field(default_factory=Hyperparameters)
    seed: Annotated[int, msgspec.Meta(ge=0, le=2**31 - 1)] = 0
    auto_save_interval: Annotated[int, msgspec.Meta(ge=0, le=10_000_000)] = 500


class EvaluateRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    # Splice on this dataset's samples (imported SAEs need one; trainings default to their own).
    dataset_id: str | None = None
    samples: Annotated[int, msgspec.Meta(ge=1, le=5000)] = EVAL_SAMPLES
    context_length: Annotated[int, msgspec.Meta(ge=2, le=32768)] = 128  # imported SAEs


class RetryRequest(msgspec.Struct, forbid_unknown_fields=True):
    from_scratch: bool = False  # drop checkpoints and metrics and start at step 0 (same seed)


class Training(msgspec.Struct):
    id: str
    model_id: str
    dataset_id: str | None  # None for imported SAEs
    activation_id: str | None
    layer: int
    hook_type: str
    encoder_type: str
    config: dict[str, Any]
    status: str
    job_id: str | None
    step: int
    total_steps: int
    latest: dict[str, Any] | None
    evaluation: dict[str, Any] | None
    error: str | None
    created_at: str
    updated_at: str


class Checkpoint(msgspec.Struct):
    step: int
    tokens: int
    loss: float | None
    saved_at: str
    # auto | user ("save now": kept outside MISTUDIO_KEEP_CHECKPOINTS) | pause | stop | requeue
    kind: str = "auto"
    held_out_loss: float | None = None  # the objective on held-out activations; pruning keeps the lowest


class CheckpointListResponse(msgspec.Struct):
    data: list[Checkpoint]
    meta: Meta


class TrainingResponse(msgspec.Struct):
    data: Training
    meta: Meta


class TrainingListResponse(msgspec.Struct):
    data: list[Training]
    meta: Meta


class MetricsResponse(msgspec.Struct):
    data: list[dict[str, Any]]
    meta: Meta



@dataclass
class _Source:
    what: str  # for messages: "activation set" or "model"
    model_id: str
    dataset_id: str
    activation_id: str | None
    model: Any  # the models row (None if it was deleted)
    hooks: list[dict[str, Any]]
    d_model: int
    context_length: int
    samples_used: int  # the evaluation reads samples after these
    parameters: int = 0


async def _source(db: Any, data: StartRequest) -> _Source:
    if data.activation_id is not None:
        act = await fetch_one(db, "activation_sets", "act", data.activation_id, "activation_id")
        if act["status"] != "ready":
            raise Conflict(f"Activation set {act['id']} is {act['status']}, not ready", details={"status": act["status"]})
        manifest = msgspec.json.decode(act["manifest"])
        models = await db.execute_fetchall("SELECT * FROM models WHERE id = ?", (act["model_id"],))
        used = msgspec.json.decode(act["config"]).get("max_samples") or manifest["samples"]
        return _Source("activation set", act["model_id"], act["dataset_id"], act["id"], models[0] if models else None,
                       manifest["hooks"], manifest["d_model"], manifest["context_length"], used)
    if data.model_id is None or data.dataset_id is None:
        raise ValidationError("Give an activation_id, or a model_id and dataset_id to stream activations from",
                              details={"field": "activation_id"})
    model = await fetch_one(db, "models", "m", data.model_id, "model_id")
    dataset = await fetch_one(db, "datasets", "ds", data.dataset_id, "dataset_id")
    for row, kind in ((model, "Model"), (dataset, "Dataset")):
        if row["status"] != "ready":
            raise Conflict(f"{kind} {row['id']} is {row['status']}, not ready", details={"status": row["status"]})
    arch = msgspec.json.decode(model["architecture"])
    if arch.get("context_length") and data.context_length > arch["context_length"]:
        raise ValidationError(f"context_length is at most {arch['context_length']} for this model",
                              details={"field": "context_length"})
    return _Source("model", model["id"], dataset["id"], None, model, arch["hook_points"], arch["d_model"],
                   data.context_length, data.max_samples or (dataset["num_samples"] or 0), arch["parameters"])


def _training(row: Any) -> Training:
    decode = msgspec.json.decode
    return Training(
        id=row["id"], model_id=row["model_id"], dataset_id=row["dataset_id"] or None, activation_id=row["activation_id"],
        layer=row["layer"], hook_type=row["hook_type"], encoder_type=row["encoder_type"], config=decode(row["config"]),
        status=row["status"], job_id=row["job_id"], step=row["step"], total_steps=row["total_steps"],
        latest=decode(row["latest"]) if row["latest"] else None,
        evaluation=decode(row["evaluation"]) if row["evaluation"] else None, error=row["error_message"],
        created_at=iso(row["created_at"]) or "", updated_at=iso(row["updated_at"]) or "")


class TrainingController(Controller):
    path = "/api/training"
    tags = ["training"]

    async def _row(self, request: Request, training_id: str) -> Any:
        db = api_state(request).db
        assert db is not None
        rows = list(await db.execute_fetchall("SELECT * FROM trainings WHERE id = ?",
                                              (check_id(training_id, "tr", "training_id"),)))
        if not rows:
            raise NotFound(f"No training {training_id!r}", details={"training_id": training_id})
        return rows[0]

    @post("/start", responses=errors(404, 409), summary="Train an SAE on a stored activation set, or on activations streamed from the model")
    async def start(self, request: Request, data: StartRequest) -> Response[AcceptedResponse]:
        api = api_state(request)
        assert api.db is not None and api.jobs is not None
        source = await _source(api.db, data)
        hooks = {(h["layer"], h["type"]): h for h in source.hooks}
        hook_type = "mlp_in" if data.encoder_type == "transcoder" else data.hook_type
        hook = hooks.get((data.layer, hook_type))
        target = hooks.get((data.layer, "mlp")) if data.encoder_type == "transcoder" else None
        if hook is None or (data.encoder_type == "transcoder" and target is None):
            have = ", ".join(f"layer {layer} {kind}" for layer, kind in sorted(hooks))
            wanted = f"layer {data.layer} mlp_in and mlp" if data.encoder_type == "transcoder" else \
                f"layer {data.layer} {data.hook_type}"
            raise ValidationError(f"The {source.what} has no {wanted}; it has: {have}", details={"field": "layer"})
        if data.encoder_type != "transcoder" and hook_type == "mlp_in":
            raise ValidationError("mlp_in is a transcoder's input; pick encoder_type 'transcoder' or another hook",
                                  details={"field": "hook_type"})
        hp = msgspec.to_builtins(data.hyperparameters)
        if data.encoder_type == "topk" and data.hyperparameters.k > (data.hyperparameters.d_sae or
                                                                     data.hyperparameters.expansion_factor * source.d_model):
            raise ValidationError("k must not exceed the number of latents", details={"field": "hyperparameters.k"})
        model = source.model
        tokenizer = "demo" if model and model["source"] == "demo" else source.model_id
        evaluation = {}
        if model is not None and model["status"] == "ready":
            evaluation = {"model_path": model["path"], "precision": model["precision"], "tokenizer": tokenizer,
                          "dataset_id": source.dataset_id, "module": hook["module"],
                          "context_length": source.context_length, "samples": EVAL_SAMPLES,
                          "skip_samples": source.samples_used, "reads_input": data.encoder_type == "transcoder"}
        stream = None
        if source.activation_id is None:
            assert model is not None
            stream = {"model_path": model["path"], "precision": model["precision"], "tokenizer": tokenizer,
                      "dataset_id": source.dataset_id, "hook_point": hook, "target_point": target,
                      "context_length": data.context_length, "max_samples": data.max_samples,
                      "parameters": source.parameters}
        training_id, now = new_id("tr"), time.time()
        config = {"hyperparameters": hp, "seed": data.seed, "auto_save_interval": data.auto_save_interval,
                  "source": "stored" if stream is None else "streamed"}
        if stream is not None:
            config.update(context_length=data.context_length, max_samples=data.max_samples)
        insert = ("INSERT INTO trainings (id, model_id, dataset_id, activation_id, layer, hook_type, encoder_type,"
                  " config, status, total_steps, created_at, updated_at)"
                  " VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'queued', ?, ?, ?)",
                  (training_id, source.model_id, source.dataset_id, source.activation_id, data.layer, hook_type,
                   data.encoder_type, msgspec.json.encode(config).decode(), data.hyperparameters.total_steps, now, now))
        return await start_job(api, "training.run", {
            "training_id": training_id, "activation_id": source.activation_id, "hook_name": hook["name"],
            "target_hook_name": target["name"] if target else None, "encoder_type": data.encoder_type,
            "d_in": source.d_model, "hyperparameters": hp, "seed": data.seed,
            "auto_save_interval": data.auto_save_interval, "evaluation": evaluation, "stream": stream,
            "metadata": {"model_name": model["name"] if model else source.model_id, "model_id": source.model_id,
                         "context_size": source.context_length, "dataset_path": source.dataset_id,
                         "training_id": training_id}}, "trainings", training_id, insert=insert)

    @get("/", summary="Trainings, newest first")
    async def list_trainings(self, request: Request) -> TrainingListResponse:
        db = api_state(request).db
        assert db is not None
        rows = await db.execute_fetchall("SELECT * FROM trainings ORDER BY created_at DESC")
        return TrainingListResponse([_training(r) for r in rows], meta())

    @get("/{training_id:str}", summary="One training: settings, state, latest metrics, evaluation")
    async def get_training(self, request: Request, training_id: str) -> TrainingResponse:
        return TrainingResponse(_training(await self._row(request, training_id)), meta())

    @get("/{training_id:str}/metrics", opt=alternatives("text/csv"), summary="Metrics history (format=json or csv)")
    async def metrics(self, request: Request, training_id: str,
                      format: Literal["json", "csv"] = Parameter(default="json")) -> Any:
        row = await self._row(request, training_id)
        db = api_state(request).db
        assert db is not None
        rows = await db.execute_fetchall(
            f"SELECT {', '.join(METRIC_COLUMNS)} FROM training_metrics WHERE training_id = ? ORDER BY step",
            (row["id"],))
        if format == "csv":
            lines = [",".join(METRIC_COLUMNS)] + [",".join("" if r[c] is None else str(r[c]) for c in METRIC_COLUMNS)
                                                 for r in rows]
            return Response("\n".join(lines) + "\n", media_type="text/csv",
                            headers={"Content-Disposition": f'attachment; filename="{row["id"]}-metrics.csv"'})
        return MetricsResponse([{c: r[c] for c in METRIC_COLUMNS} for r in rows], meta())

    async def _control(self, request: Request, training_id: str, control: str) -> TrainingResponse:
        row = await self._row(request, training_id)
        api = api_state(request)
        assert api.jobs is not None
        if not row["job_id"]:
            raise Conflict(f"Training {row['id']} has no job yet")
        await api.jobs.request(row["job_id"], control)
        return TrainingResponse(_training(await self._row(request, training_id)), meta())

    @post("/{training_id:str}/pause", responses=errors(409), status_code=200, summary="Checkpoint, then pause")
    async def pause(self, request: Request, training_id: str) -> TrainingResponse:
        return await self._control(request, training_id, "pause")

    @post("/{training_id:str}/stop", responses=errors(409), status_code=200, summary="Finish now: checkpoint, evaluate and export")
    async def stop(self, request: Request, training_id: str) -> TrainingResponse:
        return await self._control(request, training_id, "stop")

    @post("/{training_id:str}/resume", responses=errors(409, 503), status_code=200, summary="Continue a paused training from its checkpoint")
    async def resume(self, request: Request, training_id: str) -> TrainingResponse:
        row = await self._row(request, training_id)
        api = api_state(request)
        assert api.jobs is not None and api.db is not None
        if row["status"] != "paused" or not row["job_id"]:
            raise Conflict(f"Training {row['id']} is {row['status']}, not paused", details={"status": row["status"]})
        job = await api.jobs.get(row["job_id"])

        async def requeued(db: Any, job_id: str) -> None:  # commits with the job's own change
            await db.execute("UPDATE trainings SET status = 'queued', job_id = ?, updated_at = ? WHERE id = ?",
                             (job_id, time.time(), row["id"]))

        if job.status == "paused":
            await api.jobs.resume(job.id, within=requeued)
        else:  # its job ended (a checkpoint was loaded after it finished): a new job continues the run
            await api.jobs.create("training.run", job.params, target=("training", row["id"]), within=requeued)
        return TrainingResponse(_training(await self._row(request, training_id)), meta())

    @post("/{training_id:str}/retry", responses=errors(409), status_code=202,
          summary="Run a failed, cancelled or stopped training again: from its last checkpoint, or from_scratch")
    async def retry(self, request: Request, training_id: str,
                    data: RetryRequest | None = None) -> Response[AcceptedResponse]:
        row = await self._row(request, training_id)
        api = api_state(request)
        assert api.jobs is not None and api.db is not None
        scratch = bool(data and data.from_scratch)
        if msgspec.json.decode(row["config"]).get("source") == "imported":
            raise Conflict(f"Training {row['id']} is an imported SAE: import it again instead",
                           details={"status": row["status"]})
        allowed = ("failed", "cancelled", "stopped", "completed") if scratch else ("failed", "cancelled", "stopped")
        if row["status"] not in allowed or not row["job_id"]:
            hint = "" if scratch else " (from_scratch starts any finished training again)"
            raise Conflict(f"Training {row['id']} is {row['status']}: nothing to retry{hint}",
                           details={"status": row["status"]})
        previous = await api.jobs.get(row["job_id"])
        folder = api.settings.data_dir / "trainings" / row["id"]
        if scratch:
            shutil.rmtree(folder, ignore_errors=True)
            async with api.db_lock:
                await api.db.execute("DELETE FROM training_metrics WHERE training_id = ?", (row["id"],))
        else:
            shutil.rmtree(folder / "export", ignore_errors=True)

        async def requeued(db: Any, job_id: str) -> None:  # commits with the job
            await db.execute(
                "UPDATE trainings SET status = 'queued', job_id = ?, error_message = NULL, evaluation = NULL,"
                " step = CASE WHEN ? THEN 0 ELSE step END, latest = CASE WHEN ? THEN NULL ELSE latest END,"
                " updated_at = ? WHERE id = ?", (job_id, scratch, scratch, time.time(), row["id"]))

        job = await api.jobs.create("training.run", previous.params, target=("training", row["id"]), within=requeued)
        return accepted(job)

    @post("/{training_id:str}/evaluate", responses=errors(409), status_code=202,
          summary="Measure a finished SAE again: held-out quality and the spliced-model evaluation")
    async def evaluate(self, request: Request, training_id: str,
                       data: EvaluateRequest | None = None) -> Response[AcceptedResponse]:
        row = await self._row(request, training_id)
        api = api_state(request)
        assert api.jobs is not None and api.db is not None
        data = data or EvaluateRequest()
        if row["status"] not in ("completed", "stopped") or not row["job_id"]:
            raise Conflict(f"Training {row['id']} is {row['status']}: only finished SAEs are evaluated",
                           details={"status": row["status"]})
        model = await fetch_one(api.db, "models", "m", row["model_id"], "model_id")
        if model["status"] != "ready" or not model["architecture"]:
            raise Conflict(f"Model {model['id']} is {model['status']}, not ready", details={"status": model["status"]})
        arch = msgspec.json.decode(model["architecture"])
        imported = msgspec.json.decode(row["config"]).get("source") == "imported"
        train = None if imported else (await api.jobs.get(row["job_id"])).params
        spec = dict(train["evaluation"]) if train and train.get("evaluation") else {}
        if data.dataset_id is not None or not spec:
            if data.dataset_id is None:
                raise ValidationError("Name a dataset_id to evaluate this SAE on", details={"field": "dataset_id"})
            dataset = await fetch_one(api.db, "datasets", "ds", data.dataset_id, "dataset_id")
            if dataset["status"] != "ready":
                raise Conflict(f"Dataset {dataset['id']} is {dataset['status']}, not ready")
            point = next(p for p in arch["hook_points"] if p["layer"] == row["layer"] and p["type"] == row["hook_type"])
            spec = {"model_path": model["path"], "precision": model["precision"],
                    "tokenizer": "demo" if model["source"] == "demo" else model["id"], "dataset_id": dataset["id"],
                    "module": point["module"], "context_length": data.context_length,
                    "skip_samples": 0,
                    "reads_input": row["encoder_type"] == "transcoder"}
        spec["samples"] = data.samples
        previous = msgspec.json.decode(row["evaluation"]) if row["evaluation"] else {}
        job = await api.jobs.create("training.evaluate", {
            "training_id": row["id"], "train": train, "evaluation": spec, "previous": previous,
            "parameters": arch["parameters"], "precision": model["precision"]}, target=("training", row["id"]))
        return accepted(job)

    def _checkpoints(self, request: Request, training_id: str) -> Any:
        return api_state(request).settings.data_dir / "trainings" / training_id / "checkpoints"

    @get("/{training_id:str}/checkpoints", summary="Saved checkpoints, oldest first")
    async def checkpoints(self, request: Request, training_id: str) -> CheckpointListResponse:
        row = await self._row(request, training_id)
        db = api_state(request).db
        assert db is not None
        losses = {r["step"]: r["loss"] for r in await db.execute_fetchall(
            "SELECT step, loss FROM training_metrics WHERE training_id = ?", (row["id"],))}
        found = []
        for folder in sorted(self._checkpoints(request, row["id"]).glob("step_*")):
            if folder.name.endswith(".partial"):
                continue
            try:
                info = msgspec.json.decode((folder / "info.json").read_bytes())
            except (OSError, msgspec.DecodeError):  # pruned by the running training meanwhile
                continue
            found.append(Checkpoint(info["step"], info["tokens"], losses.get(info["step"]), iso(info["saved_at"]) or "",
                                    info.get("kind", "auto"), info.get("held_out_loss")))
        return CheckpointListResponse(found, meta())

    @post("/{training_id:str}/checkpoints", responses=errors(409), status_code=202, summary="Save a checkpoint now (running trainings)")
    async def save_now(self, request: Request, training_id: str) -> TrainingResponse:
        row = await self._row(request, training_id)
        if row["status"] != "running":
            raise Conflict(f"Training {row['id']} is {row['status']}: checkpoints are saved while it runs "
                           "(pausing saves one too)", details={"status": row["status"]})
        folder = api_state(request).settings.data_dir / "trainings" / row["id"]
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "save-now").touch()
        return TrainingResponse(_training(row), meta())

    @post("/{training_id:str}/checkpoints/{step:int}/load", responses=errors(409), status_code=200,
          summary="Go back to a checkpoint: later checkpoints and metrics go, the run is paused there")
    async def load_checkpoint(self, request: Request, training_id: str, step: int) -> TrainingResponse:
        row = await self._row(request, training_id)
        api = api_state(request)
        assert api.db is not None
        if row["status"] in ("queued", "running"):
            raise Conflict(f"Training {row['id']} is {row['status']}: pause or stop it first",
                           details={"status": row["status"]})
        base = self._checkpoints(request, row["id"])
        if not (base / f"step_{step:08d}" / "info.json").is_file():
            raise NotFound(f"Training {row['id']} has no checkpoint at step {step}", details={"step": step})
        for folder in base.glob("step_*"):
            if int(folder.name.split("_")[1].split(".")[0]) > step:
                shutil.rmtree(folder, ignore_errors=True)
        shutil.rmtree(base.parent / "export", ignore_errors=True)
        async with api.db_lock:
            await api.db.execute("DELETE FROM training_metrics WHERE training_id = ? AND step > ?", (row["id"], step))
            await api.db.execute("UPDATE trainings SET status = 'paused', step = ?, evaluation = NULL, updated_at = ?"
                                 " WHERE id = ?", (step, time.time(), row["id"]))
        return TrainingResponse(_training(await self._row(request, training_id)), meta())

    @delete("/{training_id:str}/checkpoints/{step:int}", status_code=200, summary="Delete one checkpoint")
    async def delete_checkpoint(self, request: Request, training_id: str, step: int) -> CheckpointListResponse:
        row = await self._row(request, training_id)
        folder = self._checkpoints(request, row["id"]) / f"step_{step:08d}"
        if not folder.is_dir():
            raise NotFound(f"Training {row['id']} has no checkpoint at step {step}", details={"step": step})
        shutil.rmtree(folder)
        return await self.checkpoints.fn(self, request, training_id)

    @get("/{training_id:str}/export", media_type="application/zip", responses=errors(409), summary="The trained SAE in the SAELens layout, as a zip")
    async def export(self, request: Request, training_id: str) -> Response[bytes]:
        row = await self._row(request, training_id)
        folder = api_state(request).settings.data_dir / "trainings" / row["id"] / "export"
        if not (folder / "cfg.json").is_file():
            raise Conflict(f"Training {row['id']} is {row['status']}: the export is written when it finishes",
                           details={"status": row["status"]})
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for file in sorted(folder.iterdir()):
                archive.write(file, f"{row['id']}/{file.name}")
        return Response(buffer.getvalue(), media_type="application/zip",
                        headers={"Content-Disposition": f'attachment; filename="{row["id"]}-saelens.zip"'})

    @delete("/{training_id:str}", responses=errors(409), status_code=200, summary="Delete a training, its checkpoints, export, features and steering presets")
    async def delete_training(self, request: Request, training_id: str) -> TrainingResponse:
        row = await self._row(request, training_id)
        api = api_state(request)
        assert api.db is not None
        if row["status"] in ("queued", "running"):
            raise Conflict(f"Training {row['id']} is {row['status']}: stop it first", details={"status": row["status"]})
        async with api.db_lock:
            await api.db.execute("DELETE FROM trainings WHERE id = ?", (row["id"],))
            # Its steering presets name its features: they go with it (the spec's cascade).
            await api.db.execute("DELETE FROM templates WHERE kind = 'steering' AND"
                                 " json_extract(config, '$.training_id') = ?", (row["id"],))
        shutil.rmtree(api.settings.data_dir / "trainings" / row["id"], ignore_errors=True)
        return TrainingResponse(_training(row), meta())
