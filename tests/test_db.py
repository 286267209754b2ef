"""Migrations and event retention on a real SQLite file."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from appliance.data import connect_sync, migrate, schema_version
from appliance.data.migrate import latest_version
from appliance.jobs.store import JobStore


def test_fresh_database_is_migrated_with_wal_and_foreign_keys(tmp_path: Path) -> None:
    db = tmp_path / "m.db"
    assert migrate(db) == latest_version() >= 1
    assert schema_version(db) == latest_version()
    conn = connect_sync(db)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"jobs", "events", "workers"} <= tables
    assert migrate(db) == latest_version()  # idempotent


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "m.db"
    migrate(db)
    conn = sqlite3.connect(db)
    conn.execute(f"PRAGMA user_version = {latest_version() + 1}")
    conn.close()
    with pytest.raises(RuntimeError, match="newer than this code"):
        migrate(db)


def test_job_status_is_constrained(tmp_path: Path) -> None:
    db = tmp_path / "m.db"
    migrate(db)
    conn = connect_sync(db)
    with pytest.raises(sqlite3.IntegrityError):
        conn.execute(
            "INSERT INTO jobs (id, kind, lane, status, created_at, updated_at)"
            " VALUES ('job_aaaaaaaa', 'x', 'heavy', 'exploded', 0, 0)"
        )


def test_retention_thins_old_progress_and_keeps_lifecycle(tmp_path: Path) -> None:
    db = tmp_path / "m.db"
    migrate(db)
    store = JobStore(db)
    old = time.time() - 3 * 86400
    conn = store.db.conn
    for i in range(50):
        conn.execute(
            "INSERT INTO events (topic, type, job_id, durable, data, created_at) VALUES (?,?,?,?,?,?)",
            ("job:job_aaaaaaaa", "job.progress", "job_aaaaaaaa", 0, f'{{"i":{i}}}', old + i),
        )
    for i in range(3):
        conn.execute(
            "INSERT INTO events (topic, type, job_id, durable, data, created_at) VALUES (?,?,?,?,?,?)",
            ("job:job_aaaaaaaa", "job.updated", "job_aaaaaaaa", 1, "{}", old + i),
        )
    recent = [
        conn.execute(
            "INSERT INTO events (topic, type, job_id, durable, data, created_at) VALUES (?,?,?,?,?,?)",
            ("job:job_bbbbbbbb", "job.progress", "job_bbbbbbbb", 0, "{}", time.time()),
        ).lastrowid
        for _ in range(20)
    ]
    newest_old = conn.execute("SELECT max(id) FROM events WHERE job_id = 'job_aaaaaaaa' AND durable = 0").fetchone()[0]
    deleted = store.thin_events(older_than_s=86400)
    assert deleted == 45
    kept = [r[0] for r in conn.execute("SELECT id FROM events WHERE job_id = 'job_aaaaaaaa' AND durable = 0")]
    assert len(kept) == 5 and newest_old in kept
    assert conn.execute("SELECT count(*) FROM events WHERE durable = 1").fetchone()[0] == 3
    assert [r[0] for r in conn.execute("SELECT id FROM events WHERE job_id = 'job_bbbbbbbb'")] == recent
    # Ids are never reused after deletion (Last-Event-ID stays meaningful).
    new_id = conn.execute("INSERT INTO events (topic, type, data, created_at) VALUES ('t', 'x', '{}', 0)").lastrowid
    assert new_id > max(recent)
