"""The API's side of the job table: create, read, list and cancel jobs. The statements are the
data-access layer's (appliance.data.jobs); this module says which commit together."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiosqlite
import msgspec
from anyio import to_thread

from appliance.data import connect_sync
from appliance.data import events as event_sql
from appliance.data import jobs as sql
from appliance.data.database import AsyncDatabase, Query
from appliance.errors import Conflict, NotFound
from appliance.ids import new_id
from appliance.jobs import finalize
from appliance.jobs.queue import JobQueue
from appliance.jobs.records import FINAL_STATUSES, Job
from appliance.jobs.registry import get_kind, job_record, resource_ending
from appliance.jobs.store import job_topic
from appliance.memory.admission import MemoryManager
from appliance.memory.estimates import refuse_what_never_fits

CANCEL_WAIT_S = 2.0

# Statements that commit together with a job: its resource rows (see AsyncJobStore.create).
Within = Callable[[aiosqlite.Connection, str], Awaitable[None]]


LIST_CACHE_ENTRIES = 64


class AsyncJobStore:
    def __init__(self, db: AsyncDatabase, queue: JobQueue, db_path: Path, memory: MemoryManager | None = None):
        # One aiosqlite connection is shared by all requests; AsyncDatabase's lock keeps transactions
        # from interleaving.
        self.db = db
        self.queue = queue
        # The worker's budget, to refuse a job that can never fit before it is created.
        self.memory = memory
        # Job lists are polled by every open UI; they are served from a cache until the database
        # changes. PRAGMA data_version moves whenever another connection (the worker, or our own
        # aiosqlite connection) commits, and reading it costs microseconds, so it is read inline.
        self._version_conn = connect_sync(db_path)
        self._data_dir = db_path.parent
        self._list_cache: dict[tuple[Any, ...], tuple[int, tuple[list[Job], int]]] = {}

    def close(self) -> None:
        self._version_conn.close()

    def _data_version(self) -> int:
        return self._version_conn.execute("PRAGMA data_version").fetchone()[0]

    async def _change(
        self, job_id: str, statement: Query, now: float, *, within: Within | None = None, enqueue: bool = False
    ) -> Job | None:
        """Apply ``statement`` to a job and publish its new state as ``job.updated``, in one transaction
        (as the worker's JobStore does); None if the statement changed no row.

        ``within(db, job_id)`` runs in the same transaction (the rows of the job's resource), and with
        ``enqueue`` the job's task (on its lane) is sent before COMMIT: if sending fails (a full disk, say)
        nothing was committed, so a job is never left queued without a task for the worker's
        reconciliation to re-send minutes after the client was told it failed. A task whose COMMIT
        then fails finds no job, and the worker drops it (JobStore.get_settled)."""
        async with self.db.transaction() as conn:
            cursor = await conn.execute(*statement)
            if cursor.rowcount == 0:
                return None
            if within is not None:
                await within(conn, job_id)
            job = job_record((await conn.execute_fetchall(*sql.get_job(job_id)))[0])  # type: ignore[index]
            await conn.execute(*event_sql.insert(job_topic(job_id), "job.updated", job, job_id, True, now))
            ended = await self._end_resource(conn, job, now)
            if enqueue:
                await to_thread.run_sync(self.queue.enqueue, job_id, job.lane)
        if ended:
            await to_thread.run_sync(finalize.remove, ended)
        return job

    async def _end_resource(self, conn: aiosqlite.Connection, job: Job, now: float) -> list[Path]:
        """Inside a job's transaction: end its resource if the job has just failed or been cancelled
        (appliance.jobs.finalize); returns the files to remove after COMMIT."""
        ending = resource_ending(job, now)
        if ending is None:
            return []
        resource, statement = ending
        rows = await conn.execute_fetchall(*statement)
        events, paths = resource.ended(list(rows), self._data_dir, now)
        for event in events:
            await conn.execute(*event)
        return paths

    async def create(
        self,
        kind_name: str,
        params: msgspec.Struct,
        target: tuple[str, str] | None = None,
        *,
        within: Within | None = None,
        control: str | None = None,
    ) -> Job:
        """Create a job and send its task, all or nothing. ``within(db, job_id)`` creates or updates the
        job's resource rows in the same transaction; it uses ``db`` directly (the write lock is held)
        and may raise (an AppError, say) to create nothing. ``control`` (a "stop"): asked of the job
        from its start, which its handler sees at its first check."""
        kind = get_kind(kind_name)
        if not isinstance(params, kind.params):
            raise TypeError(f"{kind_name} takes {kind.params.__name__}, not {type(params).__name__}")
        encoded: dict[str, Any] = msgspec.to_builtins(params)
        if self.memory is not None:
            refuse_what_never_fits(self.memory, kind_name, encoded)
        job_id = new_id("job")
        now = time.time()
        job = await self._change(
            job_id,
            sql.insert_job(job_id, kind_name, kind.lane, encoded, target, now, control),
            now,
            within=within,
            enqueue=True,
        )
        assert job is not None
        return job

    async def find(self, job_id: str) -> Job | None:
        row = await self.db.one(sql.get_job(job_id))
        return job_record(row) if row else None

    async def get(self, job_id: str) -> Job:
        job = await self.find(job_id)
        if job is None:
            raise NotFound(f"No job {job_id!r}", details={"job_id": job_id})
        return job

    async def list(self, statuses: list[str] | None, kind: str | None, page: int, limit: int) -> tuple[list[Job], int]:
        key = (tuple(statuses or ()), kind, page, limit)
        version = self._data_version()  # read before querying: a later commit only makes it stale
        cached = self._list_cache.get(key)
        if cached is not None and cached[0] == version:
            return cached[1]
        rows_q, count_q = sql.list_jobs(statuses, kind, page, limit)
        rows = await self.db.all(rows_q)
        total = await self.db.scalar(count_q)
        result = ([job_record(row) for row in rows], total)
        if len(self._list_cache) >= LIST_CACHE_ENTRIES:
            self._list_cache.clear()
        self._list_cache[key] = (version, result)
        return result

    async def request(self, job_id: str, control: str) -> Job:
        """Ask a running job to pause or stop (it acts at its next check, within ~0.1 s)."""
        job = await self.get(job_id)
        if job.status != "running":
            raise Conflict(f"Job {job_id} is {job.status}, not running", details={"status": job.status})
        await self.db.write(sql.request_control(job_id, control, ("running",), time.time()))
        return await self.get(job_id)

    async def resume(self, job_id: str, *, within: Within | None = None, control: str | None = None) -> Job:
        """Queue a paused job again; its handler picks up from its own checkpoint (``control``: as in create)."""
        now = time.time()
        job = await self._change(job_id, sql.resume(job_id, now, control), now, within=within, enqueue=True)
        if job is None:
            current = await self.get(job_id)
            raise Conflict(f"Job {job_id} is {current.status}, not paused", details={"status": current.status})
        return job

    async def cancel(self, job_id: str) -> Job:
        job = await self.get(job_id)
        if job.status in FINAL_STATUSES:
            raise Conflict(f"Job {job_id} is already {job.status}", details={"status": job.status})
        now = time.time()
        if job.status in ("queued", "paused"):
            cancelled = await self._change(job_id, sql.cancel_waiting(job_id, now), now)
            if cancelled is not None:
                return cancelled
        # Running (or it started meanwhile): ask the worker, then wait briefly for it to take effect
        # so a curl user sees the final state in the answer.
        await self.db.write(sql.request_control(job_id, "cancel", ("running",), now))
        deadline = time.monotonic() + CANCEL_WAIT_S
        while time.monotonic() < deadline:
            job = await self.get(job_id)
            if job.status in FINAL_STATUSES:
                break
            await asyncio.sleep(0.05)
        return job
