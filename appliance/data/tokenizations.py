"""SQL for ``dataset_tokenizations``: one row per (dataset, tokenizer), with the settings that made
the token ids, their statistics, and the job working on them."""

from __future__ import annotations

import time

from appliance.data.database import Query, placeholders
from appliance.data.redact import scrub


def for_datasets(dataset_ids: list[str]) -> Query:
    return (
        f"SELECT * FROM dataset_tokenizations WHERE dataset_id IN ({placeholders(dataset_ids)})"
        " ORDER BY updated_at DESC",
        tuple(dataset_ids),
    )


def running(dataset_id: str, tokenizer: str) -> Query:
    """The job tokenizing this pair now, if any."""
    return (
        "SELECT job_id FROM dataset_tokenizations WHERE dataset_id = ? AND tokenizer = ? AND status = 'tokenizing'",
        (dataset_id, tokenizer),
    )


def claim(dataset_id: str, tokenizer: str, settings: str, job_id: str, now: float) -> Query:
    """Mark the pair as being tokenized by ``job_id`` (a new row, or the earlier run's row: its stats
    stay until the new run completes, so a failed re-run falls back to them)."""
    return (
        "INSERT INTO dataset_tokenizations (dataset_id, tokenizer, settings, status, job_id, created_at,"
        " updated_at) VALUES (?, ?, ?, 'tokenizing', ?, ?, ?) ON CONFLICT (dataset_id, tokenizer) DO UPDATE"
        " SET status = 'tokenizing', job_id = excluded.job_id, error_message = NULL,"
        " updated_at = excluded.updated_at",
        (dataset_id, tokenizer, settings, job_id, now, now),
    )


def finish(
    dataset_id: str,
    tokenizer: str,
    status: str,
    *,
    settings: str | None = None,
    stats: str | None = None,
    error: str | None = None,
) -> Query:
    """The run's outcome; ``settings`` and ``stats`` are JSON (settings kept as they were when None)."""
    return (
        "UPDATE dataset_tokenizations SET status = ?, settings = coalesce(?, settings), stats = ?,"
        " error_message = ?, updated_at = ? WHERE dataset_id = ? AND tokenizer = ?",
        (status, settings, stats, scrub(error), time.time(), dataset_id, tokenizer),
    )
