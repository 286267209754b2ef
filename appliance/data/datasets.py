"""SQL for ``datasets``: one row per dataset (its samples live in ``dataset_samples``, its token ids
in files named by ``dataset_tokenizations``). Each function returns a ``Query``, so the API and the
worker run the same statements."""

from __future__ import annotations

import time
from typing import Any

from appliance.data import activation_sets, trainings
from appliance.data.database import Query
from appliance.data.jobs import ACTIVE_WHERE
from appliance.data.statements import delete_by, select_by, update

TABLE = "datasets"


def get(dataset_id: str) -> Query:
    return select_by(TABLE, dataset_id)


def list_all() -> Query:
    return "SELECT * FROM datasets ORDER BY created_at DESC", ()


def insert(
    dataset_id: str,
    *,
    name: str,
    source: str,
    status: str,
    text_column: str,
    job_id: str,
    now: float,
    format: str | None = None,
    repo_id: str | None = None,
    config: str | None = None,
    split: str | None = None,
) -> Query:
    """A new dataset row, naming the job that fills it (both commit in the job's transaction)."""
    return (
        "INSERT INTO datasets (id, name, source, repo_id, config, split, format, text_column, status, job_id,"
        " created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (dataset_id, name, source, repo_id, config, split, format, text_column, status, job_id, now, now),
    )


def live_demo() -> Query:
    """The demo dataset, unless it failed: there is one at a time."""
    return "SELECT id FROM datasets WHERE source = 'demo' AND status != 'error'", ()


def active_jobs(dataset_id: str) -> Query:
    """Jobs still working on the dataset (its import, download or a tokenization)."""
    return (
        f"SELECT id, kind FROM jobs WHERE target_type = 'dataset' AND target_id = ? AND {ACTIVE_WHERE}"
        " ORDER BY created_at",
        (dataset_id,),
    )


def dependents(dataset_id: str) -> Query:
    """What is built on the dataset, oldest first: activation sets and trainings read its samples. Rows of
    (kind, id) and what names them (appliance.services.names): a set's config; a training's encoder,
    layer, hook and config."""
    return (
        f"{activation_sets.AS_DEPENDENT} WHERE dataset_id = ?"
        f" UNION ALL {trainings.AS_DEPENDENT} WHERE dataset_id = ? ORDER BY kind, created_at",
        (dataset_id, dataset_id),
    )


def delete(dataset_id: str) -> Query:
    """The row; its samples and tokenizations go with it (ON DELETE CASCADE)."""
    return delete_by(TABLE, dataset_id)


def set_status(dataset_id: str, status: str) -> Query:
    return update(TABLE, dataset_id, {"status": status})


def set_ready(dataset_id: str, num_samples: int, size_bytes: int, stats: str, now: float | None = None) -> Query:
    """Ingestion finished: the counts and the statistics (JSON) computed once, then the row is usable."""
    fields: dict[str, Any] = {"status": "ready", "num_samples": num_samples, "size_bytes": size_bytes, "stats": stats}
    return update(TABLE, dataset_id, fields, now=time.time() if now is None else now)
