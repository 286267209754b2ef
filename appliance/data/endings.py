"""SQL for what a job's resource becomes when the job ends without completing: one rule per resource
kind (which row, while in which states, becomes what, and which event tells the UI). The rules are
applied by appliance.jobs.finalize in the same transaction as the job's own change to failed or
cancelled, whoever makes it (the API or the worker), and by the worker's start-up sweep for rows left
in progress with no live job.

Statements here use :named parameters (a rule's SQL fragments name them) and end with RETURNING, so
the caller learns which rows changed (to tell the UI and remove their files).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from appliance.contracts.events import PAYLOADS
from appliance.data.database import Query
from appliance.data.events import insert as insert_event

ENDED = ("failed", "cancelled")
Statement = tuple[str, dict[str, Any]]  # SQL with :named parameters
# A resource row with no job id is left alone this long before the sweep ends it. New rows get their
# job id in the job's own transaction; only rows of older versions lack one, and they may be recent.
UNCLAIMED_GRACE_S = 120.0


def _same(params: dict[str, Any]) -> dict[str, Any]:
    return params


@dataclass(frozen=True)
class Resource:
    table: str
    match: str  # SQL naming the job's row, with :named parameters taken from keys(job.params)
    busy: str  # SQL: the row is still in an in-progress state
    final: str | None  # SET assignments (may use :code, :message, :cancelled); None deletes the row
    event: str  # the event the UI watches, "<topic>.<type>", e.g. "dataset.updated" on topic dataset:<id>
    id_key: str  # the field of that event's payload Struct naming the row, e.g. "dataset_id"
    id_column: str = "id"
    topic: str = ""  # the topic's prefix when it is not the event's (features: training:<id>)
    files: tuple[str, ...] = ()  # paths under the data dir (formatted with the row) this row alone owns
    swept: str | None = None  # in-progress states the start-up sweep ends (default: busy)
    keys: Callable[[dict[str, Any]], dict[str, Any]] = field(default=_same)
    # A cancel deletes the row (and its files) instead of ending it as ``final`` says: what the user
    # chose to stop does not linger as a resource; the job's record says what happened.
    cancel_deletes: bool = False

    def _statement(self, where: str, delete: bool = False) -> str:
        # ``ended_by_delete`` tells ``ended`` which rows are gone.
        if delete or self.final is None:
            return f"DELETE FROM {self.table} WHERE {where} RETURNING *, 1 AS ended_by_delete"
        return (
            f"UPDATE {self.table} SET {self.final}, updated_at = :now WHERE {where} RETURNING *, 0 AS ended_by_delete"
        )

    def end(
        self, job_id: str, params: dict[str, Any], cancelled: bool, code: str, message: str, now: float
    ) -> Statement | None:
        """The statement for job ``job_id`` (with these ``params``) having ended failed or cancelled;
        only the row it owns, only while that row is still in progress (a newer job's row is never
        touched)."""
        keys = self.keys(params)
        if any(keys.get(name) is None for name in re.findall(r":(\w+)", self.match)):
            return None  # a job whose params name no row (a bug elsewhere): nothing to end
        values = {**keys, "job_id": job_id, "now": now, "cancelled": int(cancelled), "code": code, "message": message}
        where = f"({self.match}) AND ({self.busy}) AND (job_id IS NULL OR job_id = :job_id)"
        return self._statement(where, delete=cancelled and self.cancel_deletes), values

    def sweep(self, now: float) -> Statement:
        """The statement that ends every row of this kind left in progress with no live job."""
        values = {
            "now": now,
            "cancelled": 0,
            "code": "WORKER_RESTARTED",
            "cutoff": now - UNCLAIMED_GRACE_S,
            "message": "Its job ended without finishing it; found and marked at worker start",
        }
        where = (
            f"({self.swept or self.busy}) AND NOT EXISTS (SELECT 1 FROM jobs WHERE jobs.id = {self.table}.job_id"
            " AND jobs.status IN ('queued', 'running', 'paused'))"
            " AND (job_id IS NOT NULL OR updated_at < :cutoff)"
        )
        return self._statement(where), values

    def ended(self, rows: list[Any], data_dir: Path, now: float) -> tuple[list[Query], list[Path]]:
        """For the rows a statement changed: the events that tell the UI, the files to remove."""
        events, paths = [], []
        for row in rows:
            values = dict(zip(row.keys(), row))
            row_id = values[self.id_column]
            status = "deleted" if values["ended_by_delete"] else values["status"]
            payload = PAYLOADS[self.event](**{self.id_key: row_id, "status": status})
            topic = f"{self.topic or self.event.split('.')[0]}:{row_id}"
            events.append(insert_event(topic, self.event, payload, None, True, now))
            paths += [data_dir / pattern.format(**values) for pattern in self.files]
        return events, paths


def _tokenization(params: dict[str, Any]) -> dict[str, Any]:
    return {"dataset_id": params.get("dataset_id"), "tokenizer": (params.get("settings") or {}).get("tokenizer")}


_ERROR = "status = 'error', error_code = :code, error_message = :message"
_IMPORTED = "coalesce(json_extract(config, '$.source'), '') = 'imported'"

# An import that did not finish leaves nothing: no row, no files (its upload included).
DATASET_IMPORT = Resource(
    "datasets",
    "id = :dataset_id",
    "status = 'ingesting' AND source != 'huggingface'",
    None,
    "dataset.updated",
    "dataset_id",
    files=("datasets/{id}", "uploads/{id}"),
)
# A download keeps its row with the reason (the user sees what went wrong, and deletes it).
DATASET_DOWNLOAD = Resource(
    "datasets",
    "id = :dataset_id",
    "status IN ('downloading', 'ingesting') AND source = 'huggingface'",
    _ERROR,
    "dataset.updated",
    "dataset_id",
    files=("datasets/{id}", "secrets/{id}"),
)
# A run that did not finish leaves the previous tokenization as it was (ready, if there was one: its
# stats stay in the row until a new run completes), else an error with the reason.
TOKENIZATION = Resource(
    "dataset_tokenizations",
    "dataset_id = :dataset_id AND tokenizer = :tokenizer",
    "status = 'tokenizing'",
    "status = CASE WHEN stats IS NULL THEN 'error' ELSE 'ready' END,"
    " error_message = CASE WHEN stats IS NULL THEN :message END",
    "dataset.updated",
    "dataset_id",
    id_column="dataset_id",
    keys=_tokenization,
)
# A model keeps its row as an error (the demo model can be registered again, any model deleted).
MODEL = Resource(
    "models",
    "id = :model_id",
    "status IN ('downloading', 'loading', 'quantizing')",
    _ERROR,
    "model.updated",
    "model_id",
    files=("secrets/{id}",),
)
# A failed extraction keeps its row with the reason; a cancelled one leaves nothing (the jobs panel
# keeps the record). The set's own folder is listed too: a crash between its rename and the row's
# "ready" would leave it behind a row that is not ready.
ACTIVATIONS = Resource(
    "activation_sets",
    "id = :activation_id",
    "status = 'extracting'",
    _ERROR,
    "activations.updated",
    "activation_id",
    files=("activations/{id}.partial", "activations/{id}"),
    cancel_deletes=True,
)
# A training ends cancelled or failed (checkpoints stay for a retry). A paused training whose job is
# over is a checkpoint loaded after the run: not stuck, so the sweep leaves it.
_TRAINING_FINAL = (
    "status = CASE WHEN :cancelled THEN 'cancelled' ELSE 'failed' END,"
    " error_message = CASE WHEN :cancelled THEN NULL ELSE :message END"
)
TRAINING = Resource(
    "trainings",
    "id = :training_id",
    f"status IN ('queued', 'running', 'paused') AND NOT {_IMPORTED}",
    _TRAINING_FINAL,
    "training.updated",
    "training_id",
    swept=f"status IN ('queued', 'running') AND NOT {_IMPORTED}",
)
TRAINING_IMPORT = Resource(
    "trainings",
    "id = :training_id",
    f"status IN ('queued', 'running') AND {_IMPORTED}",
    _TRAINING_FINAL,
    "training.updated",
    "training_id",
    files=("uploads/{id}", "secrets/{id}", "trainings/{id}"),
)
FEATURES = Resource(
    "feature_extractions",
    "training_id = :training_id",
    "status = 'extracting'",
    "status = 'error', error_message = :message",
    "features.updated",
    "training_id",
    id_column="training_id",
    topic="training",
    files=("trainings/{training_id}/features.partial",),
)

RESOURCES = (DATASET_IMPORT, DATASET_DOWNLOAD, TOKENIZATION, MODEL, ACTIVATIONS, TRAINING, TRAINING_IMPORT, FEATURES)
