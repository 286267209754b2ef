"""Runs one job inside the worker: claims it, calls its handler, records the outcome.

Outcomes map onto job statuses: a return value -> completed; JobInterrupted('cancel'|'stop') ->
cancelled; 'pause' -> paused; 'requeue' (worker shutting down) -> queued again; AppError -> failed
with its code; any other exception -> failed with JOB_FAILED and the exception's message (the stack
trace goes to the worker log, never to the API).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field

import msgspec

from appliance.config import Settings
from appliance.data.database import Database
from appliance.data.layout import DataLayout
from appliance.errors import AppError
from appliance.jobs import torch_threads
from appliance.jobs.context import JobContext, JobInterrupted
from appliance.jobs.queue import JobQueue
from appliance.jobs.records import FINAL_STATUSES
from appliance.jobs.registry import KINDS, JobKind
from appliance.jobs.store import JobStore, job_topic
from appliance.memory.admission import MemoryBusy, MemoryManager, is_oom, release_cached_memory
from appliance.memory.usage import JobMemory

log = logging.getLogger("mistudio.jobs")

# A heavy job waiting for the heavy slot is put back on Huey's schedule this far in the future, which
# frees its consumer thread for interactive work.
HEAVY_RETRY_DELAY_S = 0.5
# An interactive job that waits for memory waits in the queue, not on a thread: it comes back this
# often (plus up to Huey's 1 s schedule check) and starts again once the memory manager can admit it.
MEMORY_RETRY_DELAY_S = 0.5


@dataclass
class Runtime:
    """Everything a job's run needs from its worker, handed in (JobContext takes its doors from here)."""

    settings: Settings
    store: JobStore
    queue: JobQueue
    memory: MemoryManager  # the worker's one memory budget (JobContext.memory)
    db: Database  # the handlers' door to the database (JobContext.db)
    running: dict[str, JobContext] = field(default_factory=dict)
    heavy_slot: threading.Lock = field(default_factory=threading.Lock)
    lock: threading.Lock = field(default_factory=threading.Lock)
    shutting_down: threading.Event = field(default_factory=threading.Event)

    @property
    def layout(self) -> DataLayout:
        return DataLayout(self.settings.data_dir)


def execute(rt: Runtime, job_id: str) -> None:
    """The queue's task body in the worker (JobQueue.serve): run job ``job_id`` if it is still queued."""
    job = rt.store.get(job_id) or rt.store.get_settled(job_id)
    if job is None or job.status != "queued":
        if job is None or job.status in FINAL_STATUSES:
            rt.memory.forget(job_id)  # cancelled while it waited for memory: it gives up its place in line
        return  # cancelled before it started, a duplicate delivery, or a job whose creation rolled back
    kind = KINDS.get(job.kind)
    if kind is None:
        rt.store.finish(job_id, "failed", error=("UNKNOWN_JOB_KIND", f"this worker has no job kind {job.kind!r}"))
        return
    if rt.shutting_down.is_set():
        rt.queue.enqueue(job_id, kind.lane)
        return
    if kind.lane == "interactive" and not rt.memory.ready(job_id):
        rt.queue.enqueue(job_id, kind.lane, delay=MEMORY_RETRY_DELAY_S)  # still no memory: not started again
        return
    heavy = kind.lane == "heavy"
    if heavy and not rt.heavy_slot.acquire(blocking=False):
        rt.queue.enqueue(job_id, kind.lane, delay=HEAVY_RETRY_DELAY_S)
        return
    try:
        _run(rt, job_id, kind)
    finally:
        if heavy:
            rt.heavy_slot.release()


def _hand_over_early_controls(store: JobStore, job_id: str, ctx: JobContext) -> None:
    """A control asked before the job ran (a paused training stopped) reaches the handler at its first
    check, not at the supervisor's next poll, by which time a fast loop would have run on."""
    for control in store.controls([job_id]).values():
        ctx.request(control)


def _run(rt: Runtime, job_id: str, kind: JobKind) -> None:
    job = rt.store.start(job_id)
    if job is None:
        return
    topic = f"{job.target.type}:{job.target.id}" if job.target else job_topic(job_id)
    store = rt.store
    ctx = JobContext(
        job,
        emit=lambda type_, data, durable=True: store.emit(topic, type_, data, job_id, durable),
        report=lambda progress, message: store.report(job_id, progress, message),
        progress_type=kind.progress_type,
        topic=topic,
        settings=rt.settings,
        db=rt.db,
        memory=rt.memory,
    )
    ctx.defer_memory_wait = kind.lane == "interactive"
    usage = ctx.usage = JobMemory(on_plan=lambda planned_mb: store.record_plan(job_id, planned_mb))
    with rt.lock:
        rt.running[job_id] = ctx
    if rt.shutting_down.is_set():
        ctx.request("requeue")
    else:
        _hand_over_early_controls(store, job_id, ctx)
    log.info("job %s (%s) started", job_id, kind.name)
    threads = rt.settings.torch_threads
    torch_threads.apply(threads)  # once a job has loaded torch (appliance.jobs.torch_threads)
    try:
        # The API encoded this Struct; decoding it again is the contract's check on this side.
        params = msgspec.convert(job.params, kind.params)
        try:
            with usage:
                result = kind.load_handler()(ctx, params)
        finally:
            if usage.planned is not None:  # a job admission let run: its peak beside its plan
                store.record_peak(job_id, usage.peak_mb())
    except JobInterrupted as stop:
        _interrupted(rt, job_id, kind, stop.control)
    except MemoryBusy as busy:
        # Not an outcome: back to the queue with the reason in its message; this thread serves the next job.
        store.requeue(job_id, busy.message)
        rt.queue.enqueue(job_id, kind.lane, delay=MEMORY_RETRY_DELAY_S)
        log.info("job %s waits for memory in the queue: %s", job_id, busy.message)
    except AppError as exc:
        log.info("job %s failed: %s %s", job_id, exc.code, exc.message)
        _failed(rt, job_id, kind, exc.code, exc.message)
    except Exception as exc:  # noqa: BLE001 - a handler bug must fail the job, not kill the worker
        if is_oom(exc):
            # Out of memory is a job failure with advice, never a dead worker.
            release_cached_memory()
            log.warning("job %s ran out of memory: %s", job_id, exc)
            _failed(
                rt,
                job_id,
                kind,
                "INSUFFICIENT_MEMORY",
                "The job ran out of memory. Try a smaller batch size or model, fp16/bf16, or stop other "
                f"jobs; the budget is MISTUDIO_MAX_MEMORY_FRACTION of RAM ({type(exc).__name__})",
            )
        else:
            log.exception("job %s failed", job_id)
            _failed(rt, job_id, kind, "JOB_FAILED", f"{type(exc).__name__}: {exc}")
    else:
        store.finish(job_id, "completed", result=result, message="Completed")
        log.info("job %s completed", job_id)
    finally:
        torch_threads.apply(threads)  # the job that first loaded torch: sized before the next one runs
        with rt.lock:
            rt.running.pop(job_id, None)


def _interrupted(rt: Runtime, job_id: str, kind: JobKind, control: str) -> None:
    if control == "requeue":
        rt.store.requeue(job_id, "Worker restarting; the job will run again")
        rt.queue.enqueue(job_id, kind.lane)
    elif control == "pause":
        rt.store.set_status(job_id, "paused", "Paused")
    else:
        rt.store.finish(job_id, "cancelled", message="Stopped" if control == "stop" else "Cancelled")
        _cleanup(kind, rt, job_id)
    log.info("job %s interrupted (%s)", job_id, control)


def _failed(rt: Runtime, job_id: str, kind: JobKind, code: str, message: str) -> None:
    rt.store.finish(job_id, "failed", error=(code, message), message="Failed")
    _cleanup(kind, rt, job_id)  # after finish, so it sees the final job with its error


def _cleanup(kind: JobKind, rt: Runtime, job_id: str) -> None:
    cleanup = kind.load_cleanup()
    if cleanup is None:
        return
    job = rt.store.get(job_id)
    if job is None:  # deleted meanwhile: what it made went with it
        log.warning("job %s is gone; nothing to clean up", job_id)
        return
    try:
        cleanup(job, msgspec.convert(job.params, kind.params), rt.layout, rt.db)
    except Exception:  # noqa: BLE001
        log.exception("cleanup of job %s failed", job_id)
