"""SQL for ``models``: one row per registered causal LM (its files live in the model folder the row
names). Each function returns a ``Query``, so the API and the worker run the same statements."""

from __future__ import annotations

from typing import Any

from appliance.data import activation_sets, trainings
from appliance.data.database import Query
from appliance.data.jobs import ACTIVE_WHERE
from appliance.data.statements import delete_by, select_by, update

TABLE = "models"


def get(model_id: str) -> Query:
    return select_by(TABLE, model_id)


def list_all() -> Query:
    return "SELECT * FROM models ORDER BY created_at DESC", ()


def insert(
    model_id: str,
    *,
    name: str,
    source: str,
    precision: str,
    status: str,
    path: str,
    job_id: str | None,
    now: float,
    repo_id: str | None = None,
    revision: str | None = None,
) -> Query:
    """A new model row, naming the job that fills it (both commit in the job's transaction; None when
    the job is linked to the row later in that same transaction)."""
    return (
        "INSERT INTO models (id, name, source, repo_id, revision, precision, status, path, job_id, created_at,"
        " updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (model_id, name, source, repo_id, revision, precision, status, path, job_id, now, now),
    )


def change(model_id: str, **fields: Any) -> Query:
    """SET some columns (status, architecture, size_bytes...) and updated_at."""
    return update(TABLE, model_id, fields)


def active_jobs(model_id: str) -> Query:
    """Jobs still working on the model or with it: its own download or load, and any job whose
    parameters name it (an extraction, a training, a generation)."""
    return (
        f"SELECT id, kind FROM jobs WHERE {ACTIVE_WHERE} AND ((target_type = 'model' AND target_id = ?)"
        " OR json_extract(params, '$.model_id') = ?) ORDER BY created_at",
        (model_id, model_id),
    )


def dependents(model_id: str) -> Query:
    """What is built on the model, oldest first: activation sets and trainings read it. Rows of
    (kind, id) and what names them (appliance.services.names): a set's config; a training's encoder,
    layer, hook and config."""
    return (
        f"{activation_sets.AS_DEPENDENT} WHERE model_id = ?"
        f" UNION ALL {trainings.AS_DEPENDENT} WHERE model_id = ? ORDER BY kind, created_at",
        (model_id, model_id),
    )


def delete(model_id: str) -> Query:
    return delete_by(TABLE, model_id)


def live_demo() -> Query:
    """The demo model, unless it failed: it is registered once at a time."""
    return "SELECT id FROM models WHERE source = 'demo' AND status != 'error'", ()


def with_own_tokenizer() -> Query:
    """Ready models other than the demo (which uses the demo tokenizer), newest first: each may bring
    its own tokenizer."""
    return (
        "SELECT id, name, architecture FROM models WHERE status = 'ready' AND source != 'demo'"
        " ORDER BY created_at DESC",
        (),
    )
