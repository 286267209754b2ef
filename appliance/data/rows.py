"""Row updates from the worker, where a job handler records progress on its resource's row."""

from __future__ import annotations

import time
from typing import Any

from appliance.config import get_settings
from appliance.data.connection import connect_sync
from appliance.data.redact import scrub

# The tables a worker job updates, and their key column; anything else is a programming error.
TABLES = {"datasets": "id", "models": "id", "activation_sets": "id", "trainings": "id",
          "feature_extractions": "training_id"}


def update_row(table: str, row_id: str, **fields: Any) -> None:
    """SET ``fields`` (and updated_at) on one row, in its own short connection."""
    if table not in TABLES:
        raise ValueError(f"not an updatable table: {table}")
    conn = connect_sync(get_settings().db_path)
    try:
        assignments = ", ".join(f"{k} = ?" for k in fields)
        conn.execute(f"UPDATE {table} SET {assignments}, updated_at = ? WHERE {TABLES[table]} = ?",
                     (*(scrub(v) for v in fields.values()), time.time(), row_id))
    finally:
        conn.close()
