"""Statement builders the table modules share: by id, update some columns, delete. Table and column
names always come from code (the table modules), never from clients."""

from __future__ import annotations

import time
from typing import Any

from appliance.data.database import Query, assignments
from appliance.data.redact import scrub


def select_by(table: str, value: Any, key: str = "id") -> Query:
    return f"SELECT * FROM {table} WHERE {key} = ?", (value,)


def update(table: str, row_id: str, fields: dict[str, Any], key: str = "id", *, now: float | None = None) -> Query:
    """SET ``fields`` and updated_at on one row. Text is scrubbed of stored secrets first: a worker's
    message or error may quote a URL with a token in it."""
    return (
        f"UPDATE {table} SET {assignments(fields)}, updated_at = ? WHERE {key} = ?",
        (*(scrub(v) for v in fields.values()), time.time() if now is None else now, row_id),
    )


def delete_by(table: str, value: Any, key: str = "id") -> Query:
    return f"DELETE FROM {table} WHERE {key} = ?", (value,)
