"""SQL for ``activation_sets``: one row per extraction of a model's activations over a dataset (its
shards and manifest live in the set's folder). Each function returns a ``Query``, so the API and the
worker run the same statements."""

from __future__ import annotations

from typing import Any

from appliance.data import trainings
from appliance.data.database import Query
from appliance.data.statements import delete_by, select_by, update

TABLE = "activation_sets"
# A set as something built on another resource (datasets/models.dependents), with what names it (its
# config); the columns of trainings.AS_DEPENDENT, so the two UNION.
AS_DEPENDENT = (
    "SELECT 'activation_set' AS kind, id, NULL AS encoder_type, NULL AS layer, NULL AS hook_type, config, created_at"
    " FROM activation_sets"
)


def get(activation_id: str) -> Query:
    return select_by(TABLE, activation_id)


def list_all() -> Query:
    return "SELECT * FROM activation_sets ORDER BY created_at DESC", ()


def insert(activation_id: str, *, model_id: str, dataset_id: str, config: str, job_id: str | None, now: float) -> Query:
    """A new set, extracting, naming the job that fills it (both commit in the job's transaction; None
    when the job is linked to the row later in that same transaction). ``config`` is the request that
    asked for it, as JSON."""
    return (
        "INSERT INTO activation_sets (id, model_id, dataset_id, status, config, job_id, created_at, updated_at)"
        " VALUES (?, ?, ?, 'extracting', ?, ?, ?, ?)",
        (activation_id, model_id, dataset_id, config, job_id, now, now),
    )


def change(activation_id: str, **fields: Any) -> Query:
    """SET some columns (status, manifest, size_bytes...) and updated_at."""
    return update(TABLE, activation_id, fields)


def dependents(activation_id: str) -> Query:
    """What is built on the set, oldest first: trainings read its shards (rows as datasets.dependents)."""
    return (
        f"{trainings.AS_DEPENDENT} WHERE activation_id = ? ORDER BY created_at",
        (activation_id,),
    )


def delete(activation_id: str) -> Query:
    return delete_by(TABLE, activation_id)
