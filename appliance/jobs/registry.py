"""Job kinds: what runs, on which lane, and how it reports.

Handlers are referenced by import path and imported only in the worker, so the API process can
validate and enqueue any kind without importing torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module
from typing import Any, Callable

from appliance.jobs import finalize as res
from appliance.jobs.finalize import Resource, Statement
from appliance.jobs.model import Job, Lane


@dataclass(frozen=True)
class JobKind:
    name: str
    handler: str  # "module:function", called as function(ctx) -> result (JSON-able) or None
    lane: Lane
    progress_type: str = "job.progress"
    # Resumable kinds are re-queued after a crash instead of failing with WORKER_RESTARTED.
    resumable: bool = False
    # Called with (job) in the worker after the job failed or was cancelled there, to remove what the
    # handler wrote while running.
    cleanup: str | None = None
    # The row the job works on, and what it becomes when the job fails or is cancelled by anyone
    # (appliance.jobs.finalize): applied in the job's own terminal transaction.
    resource: Resource | None = None

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


def resource_ending(job: Job, now: float) -> tuple[Resource, Statement] | None:
    """The statement that ends ``job``'s resource, when ``job`` has just failed or been cancelled."""
    kind = KINDS.get(job.kind)
    if job.status not in res.ENDED or kind is None or kind.resource is None:
        return None
    statement = kind.resource.end(job, now)
    return (kind.resource, statement) if statement else None


register(JobKind("selftest", "appliance.jobs.selftest:run", lane="interactive"))
register(JobKind("selftest.heavy", "appliance.jobs.selftest:run", lane="heavy"))
register(JobKind("dataset.import", "appliance.ml.dataset_ingest:run", lane="heavy",
                 progress_type="dataset.progress", cleanup="appliance.ml.dataset_ingest:cleanup",
                 resource=res.DATASET_IMPORT))
# Downloads share the heavy lane for now: one at a time, never blocking interactive work.
register(JobKind("dataset.download", "appliance.ml.dataset_download:run", lane="heavy",
                 progress_type="dataset.progress", resumable=True, cleanup="appliance.ml.dataset_download:cleanup",
                 resource=res.DATASET_DOWNLOAD))
register(JobKind("dataset.demo", "appliance.ml.dataset_ingest:build_demo", lane="heavy",
                 progress_type="dataset.progress", resumable=True, cleanup="appliance.ml.dataset_ingest:cleanup",
                 resource=res.DATASET_IMPORT))
register(JobKind("dataset.tokenize", "appliance.ml.dataset_tokenize:run", lane="heavy",
                 progress_type="dataset.progress", cleanup="appliance.ml.dataset_tokenize:cleanup",
                 resource=res.TOKENIZATION))
register(JobKind("model.register", "appliance.ml.models:register", lane="heavy",
                 progress_type="model.progress", resumable=True, cleanup="appliance.ml.models:fail",
                 resource=res.MODEL))
register(JobKind("model.download", "appliance.ml.model_download:run", lane="heavy",
                 progress_type="model.progress", resumable=True, cleanup="appliance.ml.model_download:cleanup",
                 resource=res.MODEL))
register(JobKind("activations.extract", "appliance.ml.activations:run", lane="heavy",
                 progress_type="activations.progress", cleanup="appliance.ml.activations:cleanup",
                 resource=res.ACTIVATIONS))
register(JobKind("model.import", "appliance.ml.models:import_folder", lane="heavy",
                 progress_type="model.progress", cleanup="appliance.ml.models:fail", resource=res.MODEL))
# Resumable: after a worker crash the run continues from its last checkpoint.
register(JobKind("training.run", "appliance.ml.training:run", lane="heavy", progress_type="training.progress",
                 resumable=True, resource=res.TRAINING))
register(JobKind("training.evaluate", "appliance.ml.training_evaluation:run", lane="heavy",
                 progress_type="training.progress"))
register(JobKind("training.import", "appliance.ml.sae_import:run", lane="heavy", progress_type="training.progress",
                 cleanup="appliance.ml.sae_import:failed", resource=res.TRAINING_IMPORT))
register(JobKind("features.extract", "appliance.ml.features:run", lane="heavy", progress_type="features.progress",
                 cleanup="appliance.ml.features:failed", resource=res.FEATURES))
# A person waits on these: the interactive lane, served while a training holds the heavy one.
register(JobKind("features.activations_on", "appliance.ml.feature_probe:activations_on", lane="interactive"))
register(JobKind("features.ablation", "appliance.ml.feature_probe:ablation", lane="interactive"))
register(JobKind("features.label", "appliance.ml.feature_labels:run", lane="interactive",
                 progress_type="features.progress"))
# The model stays loaded between generations (the model cache); tokens stream as steering.token.
register(JobKind("steering.generate", "appliance.ml.steering:run", lane="interactive",
                 progress_type="steering.progress"))
