"""Job kinds: what runs, on which lane, and how it reports.

Handlers are referenced by import path and imported only in the worker, so the API process can
validate and enqueue any kind without importing torch.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from importlib import import_module
from typing import Any, Callable

import msgspec

from appliance.contracts.params import features as feature_params
from appliance.contracts.params.activations import ExtractParams
from appliance.contracts.params.datasets import DemoParams, DownloadParams, ImportParams, TokenizeParams
from appliance.contracts.params.models import ModelDownloadParams, ModelImportParams, ModelRegisterParams
from appliance.contracts.params.selftest import SelftestParams
from appliance.contracts.params.steering import GenerateParams
from appliance.contracts.params.training import EvaluateRun, ImportRun, TrainRun
from appliance.jobs import finalize as res
from appliance.jobs.finalize import Resource, Statement
from appliance.jobs.records import Job, Lane, job_from_row


@dataclass(frozen=True)
class JobKind:
    name: str
    handler: str  # "module:function", called as function(ctx, params) -> result (JSON-able) or None
    lane: Lane
    progress_type: str = "job.progress"
    # Resumable kinds are re-queued after a crash instead of failing with WORKER_RESTARTED.
    resumable: bool = False
    # The job's parameters (appliance.contracts.params): the API encodes one, the runner decodes it
    # and passes it to the handler.
    params: type[msgspec.Struct] = field(kw_only=True)
    # Called as cleanup(job, params, layout, db) in the worker after the job failed or was cancelled
    # there, to remove what the handler wrote while running (the row's final state is the resource's
    # ending rule, not the clean-up's).
    cleanup: str | None = None
    # The row the job works on, and what it becomes when the job fails or is cancelled by anyone
    # (appliance.jobs.finalize): applied in the job's own terminal transaction.
    resource: Resource | None = None
    # What the kind's own resource endpoints may ask of its job besides "cancel" (which every job
    # takes): "pause"/"resume", "stop", "save_checkpoint". The job's allowed actions follow from it
    # (job_actions below).
    controls: tuple[str, ...] = ()

    def load_handler(self) -> Callable[..., Any]:
        return _load(self.handler)

    def load_cleanup(self) -> Callable[..., Any] | None:
        return _load(self.cleanup) if self.cleanup else None


def _load(path: str) -> Callable[..., Any]:
    module, _, attr = path.partition(":")
    return getattr(import_module(module), attr)


# Interactive work is served ahead of heavy work (Huey priority) and never waits for the heavy slot.
PRIORITY = {"interactive": 100, "heavy": 0}

KINDS: dict[str, JobKind] = {}


def register(kind: JobKind) -> JobKind:
    KINDS[kind.name] = kind
    return kind


def get_kind(name: str) -> JobKind:
    return KINDS[name]


def job_actions(status: str, controls: tuple[str, ...]) -> list[str]:
    """What may be asked of a job in ``status`` now (the endpoint verbs). Every unfinished job can be
    cancelled; a kind's ``controls`` add what its resource's endpoints offer: pause, stop and
    save_checkpoint reach a running handler, resume re-queues a paused job and stop ends it there."""
    if status == "queued":
        return ["cancel"]
    if status == "running":
        return ["cancel", *(c for c in ("pause", "stop", "save_checkpoint") if c in controls)]
    if status == "paused":
        return ["cancel", *(c for c in ("resume", "stop") if c in controls)]
    return []


def job_record(row: sqlite3.Row) -> Job:
    """A job row as it leaves the system, with the actions its kind allows in its status."""
    kind = KINDS.get(row["kind"])
    return job_from_row(row, job_actions(row["status"], kind.controls if kind else ()))


def resource_ending(job: Job, now: float) -> tuple[Resource, Statement] | None:
    """The statement that ends ``job``'s resource, when ``job`` has just failed or been cancelled."""
    kind = KINDS.get(job.kind)
    if job.status not in res.ENDED or kind is None or kind.resource is None:
        return None
    statement = res.ending(kind.resource, job, now)
    return (kind.resource, statement) if statement else None


register(JobKind("selftest", "appliance.jobs.selftest:run", lane="interactive", params=SelftestParams))
register(JobKind("selftest.heavy", "appliance.jobs.selftest:run", lane="heavy", params=SelftestParams))
register(
    JobKind(
        "dataset.import",
        "appliance.pipeline.datasets.ingest:run",
        lane="heavy",
        progress_type="dataset.progress",
        cleanup="appliance.pipeline.datasets.ingest:cleanup",
        resource=res.DATASET_IMPORT,
        params=ImportParams,
    )
)
# Downloads share the heavy lane for now: one at a time, never blocking interactive work.
register(
    JobKind(
        "dataset.download",
        "appliance.pipeline.datasets.download:run",
        lane="heavy",
        progress_type="dataset.progress",
        resumable=True,
        cleanup="appliance.pipeline.datasets.download:cleanup",
        resource=res.DATASET_DOWNLOAD,
        params=DownloadParams,
    )
)
register(
    JobKind(
        "dataset.demo",
        "appliance.pipeline.datasets.ingest:build_demo",
        lane="heavy",
        progress_type="dataset.progress",
        resumable=True,
        cleanup="appliance.pipeline.datasets.ingest:cleanup",
        resource=res.DATASET_IMPORT,
        params=DemoParams,
    )
)
register(
    JobKind(
        "dataset.tokenize",
        "appliance.pipeline.datasets.tokenize:run",
        lane="heavy",
        progress_type="dataset.progress",
        cleanup="appliance.pipeline.datasets.tokenize:cleanup",
        resource=res.TOKENIZATION,
        params=TokenizeParams,
    )
)
register(
    JobKind(
        "model.register",
        "appliance.pipeline.models.loading:register",
        lane="heavy",
        progress_type="model.progress",
        resumable=True,
        resource=res.MODEL,
        params=ModelRegisterParams,
    )
)
register(
    JobKind(
        "model.download",
        "appliance.pipeline.models.download:run",
        lane="heavy",
        progress_type="model.progress",
        resumable=True,
        cleanup="appliance.pipeline.models.download:cleanup",
        resource=res.MODEL,
        params=ModelDownloadParams,
    )
)
register(
    JobKind(
        "activations.extract",
        "appliance.pipeline.activations.extract:run",
        lane="heavy",
        progress_type="activations.progress",
        cleanup="appliance.pipeline.activations.extract:cleanup",
        resource=res.ACTIVATIONS,
        params=ExtractParams,
    )
)
register(
    JobKind(
        "model.import",
        "appliance.pipeline.models.loading:import_folder",
        lane="heavy",
        progress_type="model.progress",
        cleanup="appliance.pipeline.models.loading:import_failed",
        resource=res.MODEL,
        params=ModelImportParams,
    )
)
# Resumable: after a worker crash the run continues from its last checkpoint.
register(
    JobKind(
        "training.run",
        "appliance.pipeline.sae.training.loop:run",
        lane="heavy",
        progress_type="training.progress",
        resumable=True,
        resource=res.TRAINING,
        params=TrainRun,
        controls=("pause", "resume", "stop", "save_checkpoint"),
    )
)
register(
    JobKind(
        "training.evaluate",
        "appliance.pipeline.sae.evaluation.on_demand:run",
        lane="heavy",
        progress_type="training.progress",
        params=EvaluateRun,
    )
)
# No clean-up of its own: its upload, token and folder are the resource's files (finalize.TRAINING_IMPORT).
register(
    JobKind(
        "training.import",
        "appliance.pipeline.sae.io.importing:run",
        lane="heavy",
        progress_type="training.progress",
        resource=res.TRAINING_IMPORT,
        params=ImportRun,
    )
)
# No clean-up of its own: its partial folder is one of the resource's files (finalize.FEATURES).
register(
    JobKind(
        "features.extract",
        "appliance.pipeline.features.extract:run",
        lane="heavy",
        progress_type="features.progress",
        resource=res.FEATURES,
        params=feature_params.ExtractParams,
    )
)
# A person waits on these: the interactive lane, served while a training holds the heavy one.
register(
    JobKind(
        "features.activations_on",
        "appliance.pipeline.features.probe:activations_on",
        lane="interactive",
        params=feature_params.ActivationsOnParams,
    )
)
register(
    JobKind(
        "features.ablation",
        "appliance.pipeline.features.probe:ablation",
        lane="interactive",
        params=feature_params.AblationParams,
    )
)
# Explanations by a language model and their judges' scores: hours over thousands of features, and the local
# provider holds a model on the accelerator, so the heavy lane.
register(
    JobKind(
        "features.explain",
        "appliance.pipeline.features.explain:run",
        lane="heavy",
        progress_type="features.progress",
        params=feature_params.ExplainParams,
    )
)
# The model stays loaded between generations (the model cache); tokens stream as steering.token.
register(
    JobKind(
        "steering.generate",
        "appliance.pipeline.steering.generate:run",
        lane="interactive",
        progress_type="steering.progress",
        params=GenerateParams,
    )
)
