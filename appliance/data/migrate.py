"""Numbered SQL migrations (``migrations/NNNN_name.sql``) tracked by ``PRAGMA user_version``.

The API and the worker both migrate at start; a file lock makes the second one wait and then find
nothing left to do.
"""

from __future__ import annotations

import fcntl
import re
from functools import lru_cache
from importlib import resources
from pathlib import Path

from appliance.data.connection import connect_sync

_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


def _migrations() -> list[tuple[int, str, str]]:
    found = []
    for entry in resources.files("appliance.data").joinpath("migrations").iterdir():
        match = _NAME.match(entry.name)
        if match:
            found.append((int(match.group(1)), entry.name, entry.read_text(encoding="utf-8")))
    found.sort()
    numbers = [number for number, _, _ in found]
    if numbers != list(range(1, len(numbers) + 1)):
        raise RuntimeError(f"migrations must be numbered 1..n without gaps, found {numbers}")
    return found


@lru_cache(maxsize=1)
def latest_version() -> int:
    return len(_migrations())


def schema_version(db_path: Path) -> int:
    conn = connect_sync(db_path)
    try:
        return conn.execute("PRAGMA user_version").fetchone()[0]
    finally:
        conn.close()


def migrate(db_path: Path) -> int:
    """Bring the database to the latest schema; returns the resulting version."""
    db_path.parent.mkdir(parents=True, exist_ok=True)
    with open(db_path.with_name(db_path.name + ".migrate.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        conn = connect_sync(db_path)
        try:
            current = conn.execute("PRAGMA user_version").fetchone()[0]
            migrations = _migrations()
            if current > len(migrations):
                raise RuntimeError(
                    f"database schema {current} is newer than this code ({len(migrations)}): upgrade miStudio"
                )
            for number, name, sql in migrations[current:]:
                # executescript commits before running, so the BEGIN/COMMIT here is the whole unit.
                try:
                    conn.executescript(f"BEGIN IMMEDIATE;\n{sql}\nPRAGMA user_version = {number};\nCOMMIT;")
                except Exception as exc:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise RuntimeError(f"migration {name} failed: {exc}") from exc
                current = number
            return current
        finally:
            conn.close()
