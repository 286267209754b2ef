"""SAE trainings: start from an activation set, list, detail, metrics (JSON or CSV), pause, resume,
stop, delete, and the SAELens export as a zip. The rules live in appliance.services.training."""

from __future__ import annotations

from typing import Any, Literal

import msgspec
from litestar import Controller, Response, delete, get, post
from litestar.params import Parameter

from appliance.api.apidoc import alternatives, errors
from appliance.api.envelope import Envelope, ok
from appliance.api.queueing import AcceptedResponse, accepted
from appliance.data.database import AsyncDatabase, Row
from appliance.data.layout import DataLayout
from appliance.jobs.async_store import AsyncJobStore
from appliance.services import training as service
from appliance.services.training import Checkpoint, EvaluateRequest, StartRequest, TrainingDefaults
from appliance.timefmt import iso

__all__ = ["TrainingController", "Training", "StartRequest", "EvaluateRequest", "Checkpoint"]


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
    actions: list[str]  # what the API accepts now for this training (endpoint verbs)
    # The token ids whose positions the training leaves out: its activation set's, or for a streamed
    # run those its worker resolved when it started (empty until then, and when none are left out).
    excluded_token_ids: list[int] = msgspec.field(default_factory=list)
    # The SAE's width as built: d_sae latents over d_in inputs (the request's d_sae, or its expansion
    # factor × d_in), and expansion_factor = d_sae / d_in; config.hyperparameters shows the same two.
    # None where a training from before d_in was recorded cannot tell.
    d_in: int | None = None
    d_sae: int | None = None
    expansion_factor: float | None = None


def training(row: Row) -> Training:
    decode = msgspec.json.decode
    config = decode(row["config"])
    built = service.width(config)
    return Training(
        id=row["id"],
        model_id=row["model_id"],
        dataset_id=row["dataset_id"] or None,
        activation_id=row["activation_id"],
        layer=row["layer"],
        hook_type=row["hook_type"],
        encoder_type=row["encoder_type"],
        config=service.shown_config(config),
        status=row["status"],
        job_id=row["job_id"],
        step=row["step"],
        total_steps=row["total_steps"],
        latest=decode(row["latest"]) if row["latest"] else None,
        evaluation=decode(row["evaluation"]) if row["evaluation"] else None,
        error=row["error_message"],
        created_at=iso(row["created_at"]) or "",
        updated_at=iso(row["updated_at"]) or "",
        actions=service.actions(row["status"], config.get("source") == "imported"),
        excluded_token_ids=config.get("excluded_token_ids", []),
        d_in=built.d_in,
        d_sae=built.d_sae,
        expansion_factor=built.expansion_factor,
    )


class TrainingController(Controller):
    path = "/api/training"
    tags = ["training"]

    @post(
        "/start",
        responses=errors(404, 409),
        summary="Train an SAE on a stored activation set, or on activations streamed from the model",
    )
    async def start(self, db: AsyncDatabase, jobs: AsyncJobStore, data: StartRequest) -> Response[AcceptedResponse]:
        return accepted(await service.start(db, jobs, data))

    @get(
        "/defaults",
        summary="The hyperparameters a training gets for every setting it does not name",
        description="The learning rate and the L1 coefficient depend on the architecture: `by_encoder_type` "
        "gives each architecture's defaults; the flat fields are a sparse SAE's. `l1_coefficient` is null "
        "for the architectures without an L1 term (topk, batchtopk, matryoshka_batchtopk, jumprelu). "
        "`target_l0` (null: off) makes the sparsity coefficient adapt until the SAE's L0 is the one asked for "
        "(sparse, skip, transcoder, gated, jumprelu); `matryoshka_widths` (null: the class's default groups) "
        "is only for matryoshka_batchtopk.",
    )
    async def defaults(self) -> Envelope[TrainingDefaults]:
        return ok(service.defaults())

    @get("/", summary="Trainings, newest first")
    async def list_trainings(self, db: AsyncDatabase) -> Envelope[list[Training]]:
        return ok([training(r) for r in await service.list_all(db)])

    @get("/{training_id:str}", summary="One training: settings, state, latest metrics, evaluation")
    async def get_training(self, db: AsyncDatabase, training_id: str) -> Envelope[Training]:
        return ok(training(await service.get(db, training_id)))

    @get("/{training_id:str}/metrics", opt=alternatives("text/csv"), summary="Metrics history (format=json or csv)")
    async def metrics(
        self, db: AsyncDatabase, training_id: str, format: Literal["json", "csv"] = Parameter(default="json")
    ) -> Any:
        row, rows = await service.metrics(db, training_id)
        if format == "csv":
            return Response(
                service.metrics_csv(rows),
                media_type="text/csv",
                headers={"Content-Disposition": f'attachment; filename="{row["id"]}-metrics.csv"'},
            )
        return ok([dict(zip(r.keys(), r)) for r in rows])

    @post("/{training_id:str}/pause", responses=errors(409), status_code=200, summary="Checkpoint, then pause")
    async def pause(self, db: AsyncDatabase, jobs: AsyncJobStore, training_id: str) -> Envelope[Training]:
        return ok(training(await service.control(db, jobs, training_id, "pause")))

    @post(
        "/{training_id:str}/stop",
        responses=errors(409),
        status_code=200,
        summary="Finish now: checkpoint, evaluate and export",
        description="A running training ends its steps; a paused one ends where it paused (its job runs again "
        "only to export and evaluate). Either way it ends `stopped`.",
    )
    async def stop(self, db: AsyncDatabase, jobs: AsyncJobStore, training_id: str) -> Envelope[Training]:
        return ok(training(await service.stop(db, jobs, training_id)))

    @post(
        "/{training_id:str}/resume",
        responses=errors(409, 503),
        status_code=200,
        summary="Continue a paused training from its checkpoint",
    )
    async def resume(self, db: AsyncDatabase, jobs: AsyncJobStore, training_id: str) -> Envelope[Training]:
        return ok(training(await service.resume(db, jobs, training_id)))

    @post(
        "/{training_id:str}/retry",
        responses=errors(409),
        status_code=202,
        summary="Run a failed, cancelled or stopped training again: from its last checkpoint, or from_scratch",
    )
    async def retry(
        self,
        db: AsyncDatabase,
        jobs: AsyncJobStore,
        layout: DataLayout,
        training_id: str,
        data: RetryRequest | None = None,
    ) -> Response[AcceptedResponse]:
        return accepted(await service.retry(db, jobs, layout, training_id, bool(data and data.from_scratch)))

    @post(
        "/{training_id:str}/evaluate",
        responses=errors(409),
        status_code=202,
        summary="Measure a finished SAE again: held-out quality and the spliced-model evaluation",
    )
    async def evaluate(
        self, db: AsyncDatabase, jobs: AsyncJobStore, training_id: str, data: EvaluateRequest | None = None
    ) -> Response[AcceptedResponse]:
        return accepted(await service.evaluate(db, jobs, training_id, data or EvaluateRequest()))

    @get("/{training_id:str}/checkpoints", summary="Saved checkpoints, oldest first")
    async def checkpoints(self, db: AsyncDatabase, layout: DataLayout, training_id: str) -> Envelope[list[Checkpoint]]:
        return ok(await service.checkpoints(db, layout, training_id))

    @post(
        "/{training_id:str}/checkpoints",
        responses=errors(409),
        status_code=202,
        summary="Save a checkpoint now (running trainings)",
    )
    async def save_now(self, db: AsyncDatabase, jobs: AsyncJobStore, training_id: str) -> Envelope[Training]:
        return ok(training(await service.save_now(db, jobs, training_id)))

    @post(
        "/{training_id:str}/checkpoints/{step:int}/load",
        responses=errors(409),
        status_code=200,
        summary="Go back to a checkpoint: later checkpoints and metrics go, the run is paused there",
    )
    async def load_checkpoint(
        self, db: AsyncDatabase, layout: DataLayout, training_id: str, step: int
    ) -> Envelope[Training]:
        return ok(training(await service.load_checkpoint(db, layout, training_id, step)))

    @delete("/{training_id:str}/checkpoints/{step:int}", status_code=200, summary="Delete one checkpoint")
    async def delete_checkpoint(
        self, db: AsyncDatabase, layout: DataLayout, training_id: str, step: int
    ) -> Envelope[list[Checkpoint]]:
        return ok(await service.delete_checkpoint(db, layout, training_id, step))

    @get(
        "/{training_id:str}/export",
        media_type="application/zip",
        responses=errors(409),
        summary="The trained SAE in the SAELens layout, as a zip",
    )
    async def export(self, db: AsyncDatabase, layout: DataLayout, training_id: str) -> Response[bytes]:
        row, content = await service.export_zip(db, layout, training_id)
        return Response(
            content,
            media_type="application/zip",
            headers={"Content-Disposition": f'attachment; filename="{row["id"]}-saelens.zip"'},
        )

    @delete(
        "/{training_id:str}",
        responses=errors(409),
        status_code=200,
        summary="Delete a training, its checkpoints, export, features and steering presets",
    )
    async def delete_training(self, db: AsyncDatabase, layout: DataLayout, training_id: str) -> Envelope[Training]:
        return ok(training(await service.delete(db, layout, training_id)))
