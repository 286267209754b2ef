"""Checks on identifiers and paths that come from clients."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from appliance.errors import NotFound, ValidationError
from appliance.ids import is_valid_id


def check_id(value: str, prefix: str, field: str) -> str:
    if not is_valid_id(value, prefix):
        raise ValidationError(f"{field} must look like '{prefix}_' followed by 8-64 letters, digits, '-' or '_'",
                              details={"field": field, "value": value[:100]})
    return value


def safe_path(base: Path, user_path: str, field: str) -> Path:
    """Resolve ``user_path`` inside ``base``; anything that escapes it (.., absolute paths, links out)
    is a validation error."""
    if "\x00" in user_path:
        raise ValidationError(f"{field} contains a NUL byte", details={"field": field})
    root = base.resolve()
    candidate = (root / user_path).resolve()
    if candidate != root and root not in candidate.parents:
        raise ValidationError(f"{field} must stay inside {root.name}/", details={"field": field, "value": user_path[:200]})
    return candidate


async def fetch_one(db: Any, table: str, prefix: str, value: str, field: str) -> Any:
    """The row with id ``value`` (checked against ``prefix``), or NOT_FOUND naming ``field``."""
    rows = await db.execute_fetchall(f"SELECT * FROM {table} WHERE id = ?", (check_id(value, prefix, field),))
    if not rows:
        raise NotFound(f"No {table[:-1].replace('_', ' ')} {value!r}", details={field: value})
    return rows[0]
