"""Synchronous job/event writes for the worker and the CLI (the API has its async twin,
appliance.jobs.async_store). The statements are the data-access layer's (appliance.data.jobs,
appliance.data.events); this module says which commit together."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import msgspec

from appliance.data import events as event_sql
from appliance.data import jobs as sql
from appliance.data.database import Database, Query
from appliance.data.endings import RESOURCES
from appliance.data.redact import scrub
from appliance.jobs import finalize
from appliance.jobs.records import Job
from appliance.jobs.registry import job_record, resource_ending


def job_topic(job_id: str) -> str:
    return f"job:{job_id}"


class JobStore:
    """Every state change of a job and its ``job.updated`` event commit together. One connection per
    thread (the Database door), so the supervisor and the job threads can share one store."""

    def __init__(self, db: Database | Path):
        self.db = db if isinstance(db, Database) else Database(db)
        self._data_dir = self.db.path.parent

    def get(self, job_id: str) -> Job | None:
        row = self.db.one(sql.get_job(job_id))
        return job_record(row) if row else None

    def get_settled(self, job_id: str) -> Job | None:
        """The job once any write in progress has committed or rolled back. The API sends a new job's
        task before its transaction commits (AsyncJobStore._change), so a task can arrive while its row
        is still being written, or for a row that never will be: taking the write lock waits for that."""
        conn = self.db.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            return self.get(job_id)
        finally:
            conn.execute("ROLLBACK")

    def _transition(self, job_id: str, statement: Query, now: float) -> Job | None:
        """Apply ``statement`` and publish the new job state as ``job.updated``, atomically; None if the
        job was not in the state the statement starts from."""
        with self.db.transaction() as conn:
            if conn.execute(*statement).rowcount == 0:
                return None
            job = job_record(conn.execute(*sql.get_job(job_id)).fetchone())
            conn.execute(*event_sql.insert(job_topic(job_id), "job.updated", job, job_id, True, now))
            ended = self._end_resource(job, now)
        finalize.remove(ended)
        return job

    def _end_resource(self, job: Job, now: float) -> list[Path]:
        """Inside a job's transaction: end its resource if the job has just failed or been cancelled
        (appliance.jobs.finalize); returns the files to remove after COMMIT."""
        ending = resource_ending(job, now)
        if ending is None:
            return []
        resource, statement = ending
        conn = self.db.conn
        rows = conn.execute(*statement).fetchall()
        events, paths = resource.ended(rows, self._data_dir, now)
        for event in events:
            conn.execute(*event)
        return paths

    def sweep_resources(self, now: float) -> list[str]:
        """End every resource left in an in-progress state with no live job (worker start); returns
        what was ended, for the log."""
        found: list[str] = []
        paths: list[Path] = []
        with self.db.transaction() as conn:
            for resource in RESOURCES:
                rows = conn.execute(*resource.sweep(now)).fetchall()
                events, removed = resource.ended(rows, self._data_dir, now)
                for event in events:
                    conn.execute(*event)
                paths += removed
                found += [f"{resource.table} {row[resource.id_column]}" for row in rows]
        finalize.remove(paths)
        return found

    def start(self, job_id: str) -> Job | None:
        """queued -> running; None if the job is no longer queued (cancelled, or already taken)."""
        now = time.time()
        return self._transition(job_id, sql.start(job_id, now), now)

    def finish(
        self,
        job_id: str,
        status: str,
        *,
        result: Any = None,
        error: tuple[str, str] | None = None,
        message: str | None = None,
    ) -> Job | None:
        # An error is often an upstream's own words, which may quote a secret it was sent.
        result, message = scrub(result), scrub(message)
        error = (error[0], scrub(error[1])) if error else None
        now = time.time()
        encoded = event_sql.encode(result) if result is not None else None
        return self._transition(job_id, sql.finish(job_id, status, encoded, error, message, now), now)

    def requeue(self, job_id: str, message: str) -> Job | None:
        now = time.time()
        return self._transition(job_id, sql.requeue(job_id, message, now), now)

    def set_status(self, job_id: str, status: str, message: str) -> Job | None:
        now = time.time()
        return self._transition(job_id, sql.set_status(job_id, status, message, now), now)

    def report(self, job_id: str, progress: float, message: str) -> None:
        self.db.execute(sql.report(job_id, progress, scrub(message), time.time()))

    def record_plan(self, job_id: str, planned_mb: int) -> Job | None:
        """A job's memory plan, published as ``job.updated`` so the job's card shows it while it runs."""
        now = time.time()
        return self._transition(job_id, sql.record_memory(job_id, planned_mb, None, now), now)

    def record_peak(self, job_id: str, peak_mb: int) -> None:
        """A run's peak memory; the outcome's transition that follows publishes it."""
        self.db.execute(sql.record_memory(job_id, None, peak_mb, time.time()))

    def emit(
        self, topic: str, type_: str, data: msgspec.Struct, job_id: str | None = None, durable: bool = True
    ) -> None:
        """Store an event; ``data`` is its type's payload Struct (appliance.contracts.events)."""
        self.db.execute(event_sql.insert(topic, type_, scrub(data), job_id, durable, time.time()))

    def jobs_with_status(self, *statuses: str) -> list[Job]:
        return [job_record(row) for row in self.db.all(sql.with_status(*statuses))]

    def queued_before(self, cutoff: float) -> list[tuple[str, str]]:
        """(id, kind) of the jobs queued at or before ``cutoff``."""
        return [(row["id"], row["kind"]) for row in self.db.all(sql.queued_before(cutoff))]

    def controls(self, job_ids: list[str]) -> dict[str, str]:
        if not job_ids:
            return {}
        return {row["id"]: row["control"] for row in self.db.all(sql.controls(job_ids))}

    def clear_control(self, job_id: str, control: str) -> None:
        """Forget a control the handler has been given (a "save now" is taken once)."""
        self.db.execute(sql.clear_control(job_id, control))

    def request_control(self, job_id: str, control: str, statuses: tuple[str, ...]) -> bool:
        return self.db.execute(sql.request_control(job_id, control, statuses, time.time())) > 0

    def cancel_queued(self, job_id: str) -> Job | None:
        now = time.time()
        return self._transition(job_id, sql.cancel_waiting(job_id, now), now)

    def thin_events(self, older_than_s: float, keep_every: int = 10) -> int:
        """Retention: old progress events are thinned to one in ``keep_every`` per topic and type
        (always keeping the newest); lifecycle (durable) events are kept."""
        return self.db.execute(event_sql.thin(time.time() - older_than_s, keep_every))
