"""What a job's resource becomes when the job ends without completing, applied in the same transaction
as the job's own change to failed or cancelled, whoever makes it (the API cancelling a queued or
paused job, the runner recording a failure or a cancel, the worker failing a job it found running at
start). The rules themselves (one per resource kind: which row, which states, what it becomes) are SQL
and live in appliance.data.endings; this module picks the rule for a job and removes files.

Rows only this resource owns (an upload, a Hub token, a partial folder) are removed once that
transaction commits. A handler's own clean-up of what it wrote while running still runs in the worker
afterwards. Resources already stuck in an in-progress state (their job ended or vanished before this
rule existed: rows written by an older version) are ended at worker start (``Resource.sweep``).

Light: no torch (the API applies these rules too).
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from appliance.data.endings import (  # noqa: F401 - the registry names the rules through this module
    ACTIVATIONS,
    DATASET_DOWNLOAD,
    DATASET_IMPORT,
    ENDED,
    FEATURES,
    MODEL,
    RESOURCES,
    TOKENIZATION,
    TRAINING,
    TRAINING_IMPORT,
    UNCLAIMED_GRACE_S,
    Resource,
    Statement,
)
from appliance.jobs.records import Job

log = logging.getLogger("mistudio.jobs")


def ending(resource: Resource, job: Job, now: float) -> Statement | None:
    """The statement that ends ``job``'s row of ``resource``, now that the job failed or was cancelled."""
    return resource.end(
        job.id,
        job.params,
        job.status == "cancelled",
        job.error.code if job.error else "CANCELLED",
        job.error.message if job.error else (job.message or "Cancelled"),
        now,
    )


def remove(paths: list[Path]) -> None:
    """After the commit: the files of resources that ended (missing ones are fine)."""
    for path in paths:
        try:
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
        except OSError:
            log.warning("could not remove %s", path, exc_info=True)
