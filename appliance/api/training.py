"""SAE trainings: start from an activation set, list, detail, metrics (JSON or CSV), pause, resume,
stop, delete, and the SAELens export as a zip."""

from __future__ import annotations

import io
import shutil
import time
import zipfile
from typing import Annotated, Any, Literal

import msgspec
from litestar import Controller, Request, Response, delete, get, post
from litestar.params import Parameter

from appliance.api.envelope import Accepted, Meta, meta
from appliance.api.state import api_state
from appliance.api.validation import check_id
from appliance.errors import Conflict, NotFound, ValidationError
from appliance.ids import new_id
from appliance.timefmt import iso
from appliance.training_config import Hyperparameters

EVAL_SAMPLES = 64  # held-out samples (after those the activation set used) for the spliced-model evaluation
METRIC_COLUMNS = ("step", "tokens", "loss", "mse", "sparsity_loss", "l0", "dead_latents", "explained_variance",
                  "learning_rate", "activations_per_s")


class StartRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    activation_id: str
    layer: Annotated[int, msgspec.Meta(ge=0)]
    hook_type: Literal["residual", "mlp", "attention"] = "residual"
    encoder_type: Literal["sparse", "topk", "jumprelu", "skip", "transcoder"] = "topk"
    hyperparameters: Hyperparameters = msgspec.field(default_factory=Hyperparameters)
    seed: Annotated[int, msgspec.Meta(ge=0, le=2**31 - 1)] = 0
    auto_save_interval: Annotated[int, msgspec.Meta(ge=0, le=10_000_000)] = 500


class Training(msgspec.Struct):
    id: str
    model_id: str
    dataset_id: str
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


class AcceptedResponse(msgspec.Struct):
    data: Accepted
    meta: Meta


def _training(row: Any) -> Training:
    decode = msgspec.json.decode
    return Training(
        id=row["id"], model_id=row["model_id"], dataset_id=row["dataset_id"], activation_id=row["activation_id"],
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
        rows = await db.execute_fetchall("SELECT * FROM trainings WHERE id = ?",
                                         (check_id(training_id, "tr", "training_id"),))
        if not rows:
            raise NotFound(f"No training {training_id!r}", details={"training_id": training_id})
        return rows[0]

    @post("/start", summary="Train an SAE on a stored activation set")
    async def start(self, request: Request, data: StartRequest) -> Response[AcceptedResponse]:
        api = api_state(request)
        assert api.db is not None and api.jobs is not None
        rows = await api.db.execute_fetchall("SELECT * FROM activation_sets WHERE id = ?",
                                             (check_id(data.activation_id, "act", "activation_id"),))
        if not rows:
            raise NotFound(f"No activation set {data.activation_id!r}", details={"activation_id": data.activation_id})
        act = rows[0]
        if act["status"] != "ready":
            raise Conflict(f"Activation set {act['id']} is {act['status']}, not ready")
        manifest = msgspec.json.decode(act["manifest"])
        hooks = {(h["layer"], h["type"]): h for h in manifest["hooks"]}
        if data.encoder_type == "transcoder":
            # A transcoder reads what enters the MLP and predicts what leaves it: the residual before
            # the MLP is approximated here by the residual after the attention block (resid_mid).
            raise ValidationError("Transcoders need the MLP input and output in the activation set; extract "
                                  "'mlp' and 'residual' and train them when MLP-input hooks land",
                                  details={"field": "encoder_type"})
        hook = hooks.get((data.layer, data.hook_type))
        if hook is None:
            have = ", ".join(f"layer {layer} {kind}" for layer, kind in sorted(hooks))
            raise ValidationError(f"The activation set has no layer {data.layer} {data.hook_type}; it has: {have}",
                                  details={"field": "layer"})
        hp = msgspec.to_builtins(data.hyperparameters)
        if data.encoder_type == "topk" and data.hyperparameters.k > (data.hyperparameters.d_sae or
                                                                     data.hyperparameters.expansion_factor * manifest["d_model"]):
            raise ValidationError("k must not exceed the number of latents", details={"field": "hyperparameters.k"})
        model_rows = await api.db.execute_fetchall("SELECT * FROM models WHERE id = ?", (act["model_id"],))
        evaluation = {}
        if model_rows and model_rows[0]["status"] == "ready":
            model = model_rows[0]
            config_used = msgspec.json.decode(act["config"])
            evaluation = {"model_path": model["path"], "precision": model["precision"],
                          "tokenizer": "demo" if model["source"] == "demo" else model["id"],
                          "dataset_id": act["dataset_id"], "module": hook["module"],
                          "context_length": manifest["context_length"], "samples": EVAL_SAMPLES,
                          "skip_samples": config_used.get("max_samples") or manifest["samples"]}
        training_id, now = new_id("tr"), time.time()
        config = {"hyperparameters": hp, "seed": data.seed, "auto_save_interval": data.auto_save_interval}
        async with api.db_lock:
            await api.db.execute(
                "INSERT INTO trainings (id, model_id, dataset_id, activation_id, layer, hook_type, encoder_type,"
                " config, status, total_steps, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'queued', ?, ?, ?)",
                (training_id, act["model_id"], act["dataset_id"], act["id"], data.layer, data.hook_type,
                 data.encoder_type, msgspec.json.encode(config).decode(), data.hyperparameters.total_steps, now, now))
        job = await api.jobs.create("training.run", {
            "training_id": training_id, "activation_id": act["id"], "hook_name": hook["name"],
            "target_hook_name": None, "encoder_type": data.encoder_type, "d_in": manifest["d_model"],
            "hyperparameters": hp, "seed": data.seed, "auto_save_interval": data.auto_save_interval,
            "evaluation": evaluation, "metadata": {"model_name": model_rows[0]["name"] if model_rows else act["model_id"],
                         "model_id": act["model_id"], "context_size": manifest["context_length"],
                         "dataset_path": act["dataset_id"], "training_id": training_id}},
            target=("training", training_id))
        async with api.db_lock:
            await api.db.execute("UPDATE trainings SET job_id = ? WHERE id = ?", (job.id, training_id))
        return Response(AcceptedResponse(Accepted(job.id, job.status, job.kind), meta()), status_code=202)

    @get("/", summary="Trainings, newest first")
    async def list_trainings(self, request: Request) -> TrainingListResponse:
        db = api_state(request).db
        assert db is not None
        rows = await db.execute_fetchall("SELECT * FROM trainings ORDER BY created_at DESC")
        return TrainingListResponse([_training(r) for r in rows], meta())

    @get("/{training_id:str}", summary="One training: settings, state, latest metrics, evaluation")
    async def get_training(self, request: Request, training_id: str) -> TrainingResponse:
        return TrainingResponse(_training(await self._row(request, training_id)), meta())

    @get("/{training_id:str}/metrics", summary="Metrics history (format=json or csv)")
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

    @post("/{training_id:str}/pause", status_code=200, summary="Checkpoint, then pause")
    async def pause(self, request: Request, training_id: str) -> TrainingResponse:
        return await self._control(request, training_id, "pause")

    @post("/{training_id:str}/stop", status_code=200, summary="Finish now: checkpoint, evaluate and export")
    async def stop(self, request: Request, training_id: str) -> TrainingResponse:
        return await self._control(request, training_id, "stop")

    @post("/{training_id:str}/resume", status_code=200, summary="Continue a paused training from its checkpoint")
    async def resume(self, request: Request, training_id: str) -> TrainingResponse:
        row = await self._row(request, training_id)
        api = api_state(request)
        assert api.jobs is not None and api.db is not None
        if row["status"] != "paused" or not row["job_id"]:
            raise Conflict(f"Training {row['id']} is {row['status']}, not paused", details={"status": row["status"]})
        job = await api.jobs.get(row["job_id"])
        if job.status == "paused":
            await api.jobs.resume(job.id)
        else:  # its job ended (a checkpoint was loaded after it finished): a new job continues the run
            job = await api.jobs.create("training.run", job.params, target=("training", row["id"]))
        async with api.db_lock:
            await api.db.execute("UPDATE trainings SET status = 'queued', job_id = ?, updated_at = ? WHERE id = ?",
                                 (job.id, time.time(), row["id"]))
        return TrainingResponse(_training(await self._row(request, training_id)), meta())

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
            if folder.name.endswith(".partial") or not (folder / "info.json").is_file():
                continue
            info = msgspec.json.decode((folder / "info.json").read_bytes())
            found.append(Checkpoint(info["step"], info["tokens"], losses.get(info["step"]), iso(info["saved_at"]) or ""))
        return CheckpointListResponse(found, meta())

    @post("/{training_id:str}/checkpoints", status_code=202, summary="Save a checkpoint now (running trainings)")
    async def save_now(self, request: Request, training_id: str) -> TrainingResponse:
        row = await self._row(request, training_id)
        if row["status"] != "running":
            raise Conflict(f"Training {row['id']} is {row['status']}: checkpoints are saved while it runs "
                           "(pausing saves one too)", details={"status": row["status"]})
        folder = api_state(request).settings.data_dir / "trainings" / row["id"]
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "save-now").touch()
        return TrainingResponse(_training(row), meta())

    @post("/{training_id:str}/checkpoints/{step:int}/load", status_code=200,
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

    @get("/{training_id:str}/export", summary="The trained SAE in the SAELens layout, as a zip")
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

    @delete("/{training_id:str}", status_code=200, summary="Delete a training, its checkpoints and export")
    async def delete_training(self, request: Request, training_id: str) -> TrainingResponse:
        row = await self._row(request, training_id)
        api = api_state(request)
        assert api.db is not None
        if row["status"] in ("queued", "running"):
            raise Conflict(f"Training {row['id']} is {row['status']}: stop it first", details={"status": row["status"]})
        async with api.db_lock:
            await api.db.execute("DELETE FROM trainings WHERE id = ?", (row["id"],))
        shutil.rmtree(api.settings.data_dir / "trainings" / row["id"], ignore_errors=True)
        return TrainingResponse(_training(row), meta())
