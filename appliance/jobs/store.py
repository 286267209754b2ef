"""Synchronous job/event writes for the worker and the CLI (the API has its async twin in api/)."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from appliance.data import connect_sync
from appliance.data import jobs as sql
from appliance.data.redact import scrub
from appliance.jobs import finalize
from appliance.jobs.records import Job, job_from_row
from appliance.jobs.registry import resource_ending


def job_topic(job_id: str) -> str:
    return f"job:{job_id}"


class JobStore:
    """One SQLite connection per thread; every state change and its event commit together."""

    def __init__(self, db_path: Path):
        self.db_path = db_path
        self._local = threading.local()

    @property
    def conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = connect_sync(self.db_path)
        return conn

    def get(self, job_id: str) -> Job | None:
        row = self.conn.execute(*sql.get_job(job_id)).fetchone()
        return job_from_row(row) if row else None

    def get_settled(self, job_id: str) -> Job | None:
        """The job once any write in progress has committed or rolled back. The API sends a new job's
        task before its transaction commits (AsyncJobStore._change), so a task can arrive while its row
        is still being written, or for a row that never will be: taking the write lock waits for that."""
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            return self.get(job_id)
        finally:
            conn.execute("ROLLBACK")

    def _transition(self, job_id: str, assignments: str, params: tuple[Any, ...], where: str = "") -> Job | None:
        """Apply an UPDATE and publish the new job state as ``job.updated``, atomically."""
        now = time.time()
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            cur = conn.execute(f"UPDATE jobs SET {assignments}, updated_at = ? WHERE id = ?{where}",
                               (*params, now, job_id))
            if cur.rowcount == 0:
                conn.execute("ROLLBACK")
                return None
            job = job_from_row(conn.execute(*sql.get_job(job_id)).fetchone())
            conn.execute(*sql.insert_event(job_topic(job_id), "job.updated", job, job_id, True, now))
            ended = self._end_resource(job, now)
            conn.execute("COMMIT")
            finalize.remove(ended)
            return job
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def _end_resource(self, job: Job, now: float) -> list[Path]:
        """Inside a job's transaction: end its resource if the job has just failed or been cancelled
        (appliance.jobs.finalize); returns the files to remove after COMMIT."""
        ending = resource_ending(job, now)
        if ending is None:
            return []
        resource, statement = ending
        rows = self.conn.execute(*statement).fetchall()
        events, paths = resource.ended(rows, self.db_path.parent, now)
        for event in events:
            self.conn.execute(*event)
        return paths

    def sweep_resources(self, now: float) -> list[str]:
        """End every resource left in an in-progress state with no live job (worker start); returns
        what was ended, for the log."""
        conn, found, paths = self.conn, [], []
        conn.execute("BEGIN IMMEDIATE")
        try:
            for resource in finalize.RESOURCES:
                rows = conn.execute(*resource.sweep(now)).fetchall()
                events, removed = resource.ended(rows, self.db_path.parent, now)
                for event in events:
                    conn.execute(*event)
                paths += removed
                found += [f"{resource.table} {row[resource.id_column]}" for row in rows]
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        finalize.remove(paths)
        return found

    def start(self, job_id: str) -> Job | None:
        """queued -> running; None if the job is no longer queued (cancelled, or already taken)."""
        return self._transition(
            job_id, "status = 'running', started_at = ?, attempts = attempts + 1, control = NULL,"
            " error_code = NULL, error_message = NULL", (time.time(),), " AND status = 'queued'")

    def finish(self, job_id: str, status: str, *, result: Any = None, error: tuple[str, str] | None = None,
               message: str | None = None) -> Job | None:
        code, text = error if error else (None, None)
        # An error is often an upstream's own words, which may quote a secret it was sent.
        result, text, message = scrub(result), scrub(text), scrub(message)
        progress = ", progress = 1" if status == "completed" else ""
        return self._transition(
            job_id,
            f"status = ?, finished_at = ?, control = NULL, result = ?, error_code = ?, error_message = ?,"
            f" message = coalesce(?, message){progress}",
            (status, time.time(), sql.encode(result) if result is not None else None, code, text, message))

    def requeue(self, job_id: str, message: str) -> Job | None:
        return self._transition(job_id, "status = 'queued', control = NULL, message = ?", (message,))

    def set_status(self, job_id: str, status: str, message: str) -> Job | None:
        return self._transition(job_id, "status = ?, control = NULL, message = ?", (status, message))

    def report(self, job_id: str, progress: float, message: str) -> None:
        self.conn.execute("UPDATE jobs SET progress = ?, message = ?, updated_at = ? WHERE id = ?",
                          (progress, scrub(message), time.time(), job_id))

    def emit(self, topic: str, type_: str, data: Any, job_id: str | None = None, durable: bool = True) -> None:
        self.conn.execute(*sql.insert_event(topic, type_, scrub(data), job_id, durable, time.time()))

    def jobs_with_status(self, *statuses: str) -> list[Job]:
        marks = ",".join("?" * len(statuses))
        rows = self.conn.execute(f"SELECT * FROM jobs WHERE status IN ({marks}) ORDER BY created_at", statuses)
        return [job_from_row(row) for row in rows]

    def controls(self, job_ids: list[str]) -> dict[str, str]:
        if not job_ids:
            return {}
        marks = ",".join("?" * len(job_ids))
        rows = self.conn.execute(
            f"SELECT id, control FROM jobs WHERE id IN ({marks}) AND control IS NOT NULL", job_ids)
        return {row["id"]: row["control"] for row in rows}

    def clear_control(self, job_id: str, control: str) -> None:
        """Forget a control the handler has been given (a "save now" is taken once)."""
        self.conn.execute("UPDATE jobs SET control = NULL WHERE id = ? AND control = ?", (job_id, control))

    def request_control(self, job_id: str, control: str, statuses: tuple[str, ...]) -> bool:
        return self.conn.execute(*sql.request_control(job_id, control, statuses, time.time())).rowcount > 0

    def cancel_queued(self, job_id: str) -> Job | None:
        return self._transition(
            job_id, "status = 'cancelled', control = NULL, finished_at = ?, message = 'Cancelled before it started'",
            (time.time(),), " AND status IN ('queued', 'paused')")

    def thin_events(self, older_than_s: float, keep_every: int = 10) -> int:
        """Retention: old progress events are thinned to one in ``keep_every`` per topic and type
        (always keeping the newest); lifecycle (durable) events are kept."""
        cutoff = time.time() - older_than_s
        cur = self.conn.execute(
            "DELETE FROM events WHERE id IN (SELECT id FROM ("
            " SELECT id, row_number() OVER (PARTITION BY topic, type ORDER BY id DESC) AS rn"
            " FROM events WHERE durable = 0 AND created_at < ?) WHERE rn > 1 AND rn % ? != 1)",
            (cutoff, keep_every))
        return cur.rowcount
