"""The worker process: the Huey consumer plus the supervision that makes jobs durable.

- One worker per data dir (a file lock), so reconciling "running" jobs at start is safe: nobody
  else can be running them.
- A supervisor thread relays cancel/pause requests from the job table to running handlers within
  ~0.1 s, writes the heartbeat the API's readiness check reads, and thins old events.
- SIGTERM/SIGINT ask running handlers to stop ('requeue'), give them a few seconds to save their
  state, and put their jobs back in the queue; SIGKILL is covered by reconciliation at next start.
"""

from __future__ import annotations

import fcntl
import functools
import logging
import os
import platform
import signal
import socket
import sys
import threading
import time
from importlib import metadata
from typing import Any

from huey.consumer import Consumer

from appliance import __version__
from appliance.config import Settings
from appliance.data import migrate, redact
from appliance.data import workers as worker_sql
from appliance.data.database import Database
from appliance.data.events import encode
from appliance.data.layout import DataLayout
from appliance.jobs import runner, torch_threads
from appliance.jobs.context import SAVE
from appliance.jobs.queue import JobQueue
from appliance.jobs.registry import KINDS
from appliance.jobs.store import JobStore
from appliance.memory.admission import MemoryManager

log = logging.getLogger("mistudio.worker")

CONTROL_POLL_S = 0.1
HEARTBEAT_S = 2.0
MAINTENANCE_S = 600.0
SHUTDOWN_GRACE_S = 8.0
MODEL_UNLOAD_CHECK_S = 30.0


class WorkerAlreadyRunning(RuntimeError):
    pass


def _package_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def worker_info(settings: Settings) -> dict[str, Any]:
    # Versions come from package metadata: importing torch here would cost 2 s and 240 MB before the
    # first job needs it.
    return {
        "version": __version__,
        "python": platform.python_version(),
        "torch": _package_version("torch"),
        "transformers": _package_version("transformers"),
        "platform": platform.platform(),
        "threads": settings.worker_threads,
    }


class _Consumer(Consumer):
    """Huey's consumer with our signal handling (see module docstring)."""

    def __init__(self, *args: Any, on_stop_signal: Any, **kwargs: Any):
        self._on_stop_signal = on_stop_signal
        super().__init__(*args, **kwargs)

    def _set_signal_handlers(self) -> None:
        def handler(signum: int, frame: Any) -> None:
            self._on_stop_signal(signum)

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)
        if hasattr(signal, "SIGHUP"):
            signal.signal(signal.SIGHUP, signal.SIG_IGN)


class Worker:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.layout = DataLayout(settings.data_dir)
        # One Database door (a connection per thread) for the job store, the handlers and supervision.
        self.db = Database(settings.db_path)
        self.store = JobStore(self.db)
        self.queue = JobQueue(settings.queue_path)
        self.runtime = runner.Runtime(
            settings=settings,
            store=self.store,
            queue=self.queue,
            memory=MemoryManager.from_settings(settings),
            db=self.db,
        )
        self.worker_id = f"w_{os.getpid()}_{int(time.time())}"
        self._stop = threading.Event()
        self._lock_file: Any = None
        self._consumer: _Consumer | None = None

    # -- start-up -------------------------------------------------------------------------------
    def acquire_lock(self) -> None:
        self.settings.data_dir.mkdir(parents=True, exist_ok=True)
        path = self.layout.worker_lock
        self._lock_file = open(path, "a+")
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock_file.seek(0)
            holder = self._lock_file.read().strip() or "unknown"
            raise WorkerAlreadyRunning(
                f"another worker (pid {holder}) already serves {self.settings.data_dir}"
            ) from None
        self._lock_file.seek(0)
        self._lock_file.truncate()
        self._lock_file.write(str(os.getpid()))
        self._lock_file.flush()

    def register(self) -> None:
        self.db.execute(
            worker_sql.insert(
                self.worker_id, os.getpid(), socket.gethostname(), encode(worker_info(self.settings)), time.time()
            )
        )

    def reconcile(self) -> None:
        """Jobs a dead worker left behind: resume the resumable, fail the rest, re-send lost tasks."""
        for job in self.store.jobs_with_status("running"):
            kind = KINDS.get(job.kind)
            if kind is not None and kind.resumable:
                self.store.requeue(job.id, "Resuming after a worker restart")
                self.queue.enqueue(job.id, kind.lane)
                log.warning("job %s was running when the worker died: resuming", job.id)
                continue
            self.store.finish(
                job.id,
                "failed",
                message="Failed",
                error=("WORKER_RESTARTED", "The worker stopped while this job was running"),
            )
            if kind is not None:
                runner._cleanup(kind, self.runtime, job.id)
            log.warning("job %s was running when the worker died: marked failed", job.id)
        # Resources whose job ended or vanished without ending them (rows of an older version): each goes
        # to its final state (appliance.jobs.finalize).
        for swept in self.store.sweep_resources(time.time()):
            log.warning("%s was left in progress with no job working on it: ended", swept)
        self.requeue_lost()

    def requeue_lost(self, min_age_s: float = 0.0) -> None:
        """Queued jobs with no Huey task (the queue lost it: a task taken by a worker that then died)."""
        waiting = self.queue.queued_job_ids()
        for job_id, kind_name in self.store.queued_before(time.time() - min_age_s):
            if job_id in waiting or job_id in self.runtime.running:
                continue
            kind = KINDS.get(kind_name)
            self.queue.enqueue(job_id, kind.lane if kind else "interactive")
            log.info("job %s had no queued task: re-sent", job_id)

    # -- supervision ----------------------------------------------------------------------------
    def _supervise(self) -> None:
        store = self.store  # the Database door gives this thread its own connection
        next_heartbeat = next_maintenance = 0.0
        next_unload = time.monotonic() + MODEL_UNLOAD_CHECK_S
        while not self._stop.wait(CONTROL_POLL_S):
            try:
                with self.runtime.lock:
                    running = dict(self.runtime.running)
                for job_id, control in store.controls(list(running)).items():
                    running[job_id].request(control)
                    if control == SAVE:
                        store.clear_control(job_id, SAVE)
                now = time.monotonic()
                if now >= next_heartbeat:
                    next_heartbeat = now + HEARTBEAT_S
                    self.db.execute(worker_sql.heartbeat(self.worker_id, time.time()))
                if now >= next_unload:
                    next_unload = now + MODEL_UNLOAD_CHECK_S
                    self.runtime.memory.models.evict_idle(self.settings.model_idle_s)
                if now >= next_maintenance:
                    next_maintenance = now + MAINTENANCE_S
                    store.thin_events(self.settings.event_retention_hours * 3600)
                    self.requeue_lost(min_age_s=30.0)
            except Exception:  # noqa: BLE001 - a locked DB for a moment must not end supervision
                log.exception("supervisor iteration failed")

    def _on_stop_signal(self, signum: int) -> None:
        if self.runtime.shutting_down.is_set():
            return
        log.info("received %s: asking running jobs to stop and re-queue", signal.Signals(signum).name)
        self.runtime.shutting_down.set()
        with self.runtime.lock:
            for ctx in self.runtime.running.values():
                ctx.request("requeue")
        threading.Thread(target=self._finish_shutdown, name="shutdown", daemon=True).start()

    def _finish_shutdown(self) -> None:
        deadline = time.monotonic() + SHUTDOWN_GRACE_S
        while self.runtime.running and time.monotonic() < deadline:
            time.sleep(0.05)
        if self.runtime.running:
            log.warning("jobs still running after %.0fs: %s", SHUTDOWN_GRACE_S, list(self.runtime.running))
        if self._consumer is not None:
            self._consumer.stop_flag.set()

    def _on_interrupted(self, signal_name: str, task: Any, *args: Any, **kwargs: Any) -> None:
        # A task still in flight when the consumer exited: put its job back so nothing is lost.
        job_id = task.args[0] if task.args else None
        job = self.store.get(job_id) if job_id else None
        if job is not None and job.status == "running":
            kind = KINDS.get(job.kind)
            self.store.requeue(job.id, "Worker stopped; the job will run again")
            self.queue.enqueue(job.id, kind.lane if kind else "interactive")

    # -- main -----------------------------------------------------------------------------------
    def run(self) -> None:
        # Hub caches live in the data dir: offline-first, and writable under systemd's ProtectHome.
        os.environ.setdefault("HF_HOME", str(self.layout.hf_home))
        torch_threads.export(self.settings.torch_threads)  # before any job imports torch
        # Before anything can fail or log: no stored secret leaves this process in any text.
        redact.install(redact.Scrubber(self.settings.data_dir, (self.settings.token,)))
        migrate(self.settings.db_path)
        self.acquire_lock()
        self.queue.serve(functools.partial(runner.execute, self.runtime))
        self.register()
        self.reconcile()
        self.queue.huey.signal("interrupted")(self._on_interrupted)
        supervisor = threading.Thread(target=self._supervise, name="supervisor", daemon=True)
        supervisor.start()
        # Short, flat polling: pickup stays under ~0.1 s even after the queue idled for hours
        # (Huey's default backs off to 10 s), at about 1% of a core.
        self._consumer = _Consumer(
            self.queue.huey,
            workers=self.settings.worker_threads,
            worker_type="thread",
            periodic=True,
            initial_delay=0.01,
            backoff=1.15,
            max_delay=0.1,
            check_worker_health=True,
            on_stop_signal=self._on_stop_signal,
        )
        log.info(
            "worker %s serving %s with %d threads", self.worker_id, self.settings.data_dir, self.settings.worker_threads
        )
        try:
            self._consumer.run()
        finally:
            self._stop.set()
            supervisor.join(timeout=2)
            self.db.execute(worker_sql.stopped(self.worker_id, time.time()))
            log.info("worker stopped")


def run_worker(settings: Settings) -> int:
    try:
        Worker(settings).run()
    except WorkerAlreadyRunning as exc:
        print(f"mistudio worker: {exc}", file=sys.stderr)
        return 1
    return 0
