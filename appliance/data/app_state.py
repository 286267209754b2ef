"""SQL for ``app_state``: small key/value facts of the data dir (run-time settings, which seeds were
made once). Each function returns a ``Query`` so the async API and the sync worker run the same SQL."""

from __future__ import annotations

from appliance.data.database import Query


def get(key: str) -> Query:
    return "SELECT value FROM app_state WHERE key = ?", (key,)


def exists(key: str) -> Query:
    return "SELECT 1 FROM app_state WHERE key = ?", (key,)


def put(key: str, value: str, now: float) -> Query:
    """Insert or replace the value of ``key``."""
    return (
        "INSERT INTO app_state (key, value, updated_at) VALUES (?, ?, ?) ON CONFLICT (key) DO UPDATE SET"
        " value = excluded.value, updated_at = excluded.updated_at",
        (key, value, now),
    )


def put_once(key: str, value: str, now: float) -> Query:
    """Record ``key`` unless it is already there: a seed that ran once must not run again, even when
    two requests race to make it."""
    return "INSERT OR IGNORE INTO app_state (key, value, updated_at) VALUES (?, ?, ?)", (key, value, now)


def schema_version() -> Query:
    """The migration the database is at: a fact of the data dir like the others here (health compares
    it with the newest migration)."""
    return "PRAGMA user_version", ()
