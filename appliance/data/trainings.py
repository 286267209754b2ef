"""SQL for ``trainings`` and ``training_metrics``, shared by the async API and the synchronous worker.

Each function returns a ``Query`` (or several that must commit together); the callers run them with
``Database``/``AsyncDatabase``. A status change always comes with its ``training.updated`` event
(``status_change``), so the UI never sees a row whose event was lost, nor an event for a change that
rolled back.
"""

from __future__ import annotations

import time
from typing import Any

import msgspec

from appliance.contracts.events import TrainingUpdated
from appliance.data.database import Query
from appliance.data.events import insert as insert_event
from appliance.data.redact import scrub
from appliance.data.statements import delete_by, select_by, update

METRIC_COLUMNS = (
    "step",
    "tokens",
    "loss",
    "mse",
    "sparsity_loss",
    "l0",
    "dead_latents",
    "explained_variance",
    "learning_rate",
    "activations_per_s",
    "memory_mb",
    "sparsity_coefficient",
)


# A training as something built on another resource (datasets/models/activation_sets.dependents), with
# what names it: the same columns as activation_sets.AS_DEPENDENT, so the two UNION.
AS_DEPENDENT = "SELECT 'training' AS kind, id, encoder_type, layer, hook_type, config, created_at FROM trainings"


def encode(value: Any) -> str:
    return msgspec.json.encode(value).decode()


# -- trainings ------------------------------------------------------------------------------------
def get(training_id: str) -> Query:
    return select_by("trainings", training_id)


def list_all() -> Query:
    return "SELECT * FROM trainings ORDER BY created_at DESC", ()


def insert(
    training_id: str,
    *,
    model_id: str,
    dataset_id: str,
    activation_id: str | None,
    layer: int,
    hook_type: str,
    encoder_type: str,
    config: dict[str, Any],
    total_steps: int,
    now: float,
) -> Query:
    """A new training, queued (its job is created in the same transaction)."""
    return (
        "INSERT INTO trainings (id, model_id, dataset_id, activation_id, layer, hook_type, encoder_type,"
        " config, status, total_steps, created_at, updated_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'queued', ?, ?, ?)",
        (
            training_id,
            model_id,
            dataset_id,
            activation_id,
            layer,
            hook_type,
            encoder_type,
            encode(config),
            total_steps,
            now,
            now,
        ),
    )


def status_change(
    training_id: str, status: str | None, *, job_id: str | None, event_status: str | None = None, **fields: Any
) -> list[Query]:
    """The row's new ``status`` (and ``fields``) and the ``training.updated`` event that announces it:
    run them as one transaction. ``event_status`` is what the event says when it differs from the
    row (an on-demand evaluation announces "evaluated" and leaves the status as it was)."""
    now = time.time()
    change = update("trainings", training_id, {**({"status": status} if status else {}), **fields}, now=now)
    return [change, updated_event(training_id, event_status or status or "", job_id, now=now)]


def updated_event(training_id: str, status: str, job_id: str | None, *, now: float | None = None) -> Query:
    """``training.updated`` on the training's topic (``training:<id>``, the topic its jobs' events
    use too), naming its new status."""
    data = scrub(TrainingUpdated(training_id=training_id, status=status))
    return insert_event(
        f"training:{training_id}", "training.updated", data, job_id, True, time.time() if now is None else now
    )


def requeue(training_id: str, job_id: str, *, from_scratch: bool = False, clear_error: bool = False) -> Query:
    """The row of a training that a new (or resumed) job continues: queued, naming that job. A retry
    clears the last run's error and evaluation; from scratch, its step and latest metrics too."""
    sets = "status = 'queued', job_id = ?"
    if clear_error:
        sets += ", error_message = NULL, evaluation = NULL"
    if from_scratch:
        sets += ", step = 0, latest = NULL"
    return f"UPDATE trainings SET {sets}, updated_at = ? WHERE id = ?", (job_id, time.time(), training_id)


def record_excluded(training_id: str, token_ids: list[int]) -> Query:
    """The token ids a streamed training leaves out, as its worker resolved them from the tokenizer,
    into the row's config (``excluded_token_ids``) beside what the request asked for."""
    return (
        "UPDATE trainings SET config = json_set(config, '$.excluded_token_ids', json(?)), updated_at = ? WHERE id = ?",
        (encode(token_ids), time.time(), training_id),
    )


def back_to_checkpoint(training_id: str, step: int) -> Query:
    """A checkpoint loaded: the run is paused at ``step``; the evaluation of the later weights goes."""
    return (
        "UPDATE trainings SET status = 'paused', step = ?, evaluation = NULL, updated_at = ? WHERE id = ?",
        (step, time.time(), training_id),
    )


def delete(training_id: str) -> Query:
    """Its metrics, features and feature extraction go with it (ON DELETE CASCADE)."""
    return delete_by("trainings", training_id)


# -- training_metrics -----------------------------------------------------------------------------
def record_metrics(training_id: str, row: dict[str, Any]) -> list[Query]:
    """One logged step and the row's latest figures, as one transaction. A run resumed from a
    checkpoint passes the same steps again and replaces their rows."""
    now = time.time()
    values = tuple(row[column] for column in METRIC_COLUMNS)
    return [
        (
            f"INSERT OR REPLACE INTO training_metrics (training_id, {', '.join(METRIC_COLUMNS)}, recorded_at)"
            f" VALUES (?, {', '.join('?' * len(METRIC_COLUMNS))}, ?)",
            (training_id, *values, now),
        ),
        # Figures only, never upstream text: no secret scrubbing on this hot path.
        (
            "UPDATE trainings SET step = ?, latest = ?, updated_at = ? WHERE id = ?",
            (row["step"], encode(row), now, training_id),
        ),
    ]


def metrics(training_id: str) -> Query:
    return (
        f"SELECT {', '.join(METRIC_COLUMNS)} FROM training_metrics WHERE training_id = ? ORDER BY step",
        (training_id,),
    )


def losses(training_id: str) -> Query:
    return "SELECT step, loss FROM training_metrics WHERE training_id = ?", (training_id,)


def delete_metrics(training_id: str, after_step: int = -1) -> Query:
    """The metrics past ``after_step`` (all of them by default)."""
    return "DELETE FROM training_metrics WHERE training_id = ? AND step > ?", (training_id, after_step)
