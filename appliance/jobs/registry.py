"""Job kinds: what runs, on which lane, and how it reports.

Handlers are referenced by import path and imported only in the worker, so the API process can
validate and enqueue any kind without importing torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module
from typing import Any, Callable

import msgspec

from appliance.contracts.params.selftest import SelftestParams
from appliance.jobs import finalize as res
from appliance.jobs.finalize import Resource, Statement
from appliance.jobs.records import Job, Lane


@dataclass(frozen=True)
class JobKind:
    name: str
    handler: str  # "module:function", called as function(ctx, params) -> result (JSON-able) or None
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
    # The job's parameters (appliance.contracts.params): the API encodes one, the runner decodes it
    # and passes it to the handler.
    params: type[msgspec.Struct] | None = None

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


register(JobKind("selftest", "appliance.jobs.selftest:run", lane="interactive", params=SelftestParams))
register(JobKind("selftest.heavy", "appliance.jobs.selftest:run", lane="heavy", params=SelftestParams))
register(JobKind("dataset.import", "appliance.pipeline.datasets.ingest:run", lane="heavy",
                 progress_type="dataset.progress", cleanup="appliance.pipeline.datasets.ingest:cleanup",
                 resource=res.DATASET_IMPORT))
# Downloads share the heavy lane for now: one at a time, never blocking interactive work.
register(JobKind("dataset.download", "appliance.pipeline.datasets.download:run", lane="heavy",
                 progress_type="dataset.progress", resumable=True, cleanup="appliance.pipeline.datasets.download:cleanup",
                 resource=res.DATASET_DOWNLOAD))
register(JobKind("dataset.demo", "appliance.pipeline.datasets.ingest:build_demo", lane="heavy",
                 progress_type="dataset.progress", resumable=True, cleanup="appliance.pipeline.datasets.ingest:cleanup",
                 resource=res.DATASET_IMPORT))
register(JobKind("dataset.tokenize", "appliance.pipeline.datasets.tokenize:run", lane="heavy",
                 progress_type="dataset.progress", cleanup="appliance.pipeline.datasets.tokenize:cleanup",
                 resource=res.TOKENIZATION))
register(JobKind("model.register", "appliance.pipeline.models.loading:register", lane="heavy",
                 progress_type="model.progress", resumable=True, cleanup="appliance.pipeline.models.loading:fail",
                 resource=res.MODEL))
register(JobKind("model.download", "appliance.pipeline.models.download:run", lane="heavy",
                 progress_type="model.progress", resumable=True, cleanup="appliance.pipeline.models.download:cleanup",
                 resource=res.MODEL))
register(JobKind("activations.extract", "appliance.pipeline.activations.extract:run", lane="heavy",
                 progress_type="activations.progress", cleanup="appliance.pipeline.activations.extract:cleanup",
                 resource=res.ACTIVATIONS))
register(JobKind("model.import", "appliance.pipeline.models.loading:import_folder", lane="heavy",
                 progress_type="model.progress", cleanup="appliance.pipeline.models.loading:fail", resource=res.MODEL))
# Resumable: after a worker crash the run continues from its last checkpoint.
register(JobKind("training.run", "appliance.pipeline.sae.training.loop:run", lane="heavy", progress_type="training.progress",
                 resumable=True, resource=res.TRAINING))
register(JobKind("training.evaluate", "appliance.pipeline.sae.evaluation.on_demand:run", lane="heavy",
                 progress_type="training.progress"))
register(JobKind("training.import", "appliance.pipeline.sae.io.importing:run", lane="heavy", progress_type="training.progress",
                 cleanup="appliance.pipeline.sae.io.importing:failed", resource=res.TRAINING_IMPORT))
register(JobKind("features.extract", "appliance.pipeline.features.extract:run", lane="heavy", progress_type="features.progress",
                 cleanup="appliance.pipeline.features.extract:failed", resource=res.FEATURES))
# A person waits on these: the interactive lane, served while a training holds the heavy one.
register(JobKind("features.activations_on", "appliance.pipeline.features.probe:activations_on", lane="interactive"))
register(JobKind("features.ablation", "appliance.pipeline.features.probe:ablation", lane="interactive"))
register(JobKind("features.label", "appliance.pipeline.features.labels:run", lane="interactive",
                 progress_type="features.progress"))
# The model stays loaded between generations (the model cache); tokens stream as steering.token.
register(JobKind("steering.generate", "appliance.pipeline.steering.generate:run", lane="interactive",
                 progress_type="steering.progress"))
