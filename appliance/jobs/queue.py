"""The Huey transport. A task carries only a job id; the job row says what to do.

The API builds the same queue to enqueue; only the worker consumes it, and only the worker gives the
queue what a task does (``serve``: the runner's execute). So the queue knows nothing of the runner,
and enqueueing never pulls in job handlers (or torch).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from huey import SqliteHuey

from appliance.jobs.registry import PRIORITY


class JobQueue:
    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        # results=False: outcomes live in the job table, not in Huey's result store.
        self.huey = SqliteHuey(name="mistudio", filename=str(path), results=False, utc=True)
        self._execute: Callable[[str], None] | None = None

        # The task is registered in every process (Huey enqueues by task name) but runs only where
        # serve() installed its body.
        @self.huey.task(name="run_job", context=True)
        def run_job(job_id: str, task: Any = None) -> None:
            if self._execute is None:
                raise RuntimeError("this process only enqueues jobs; `mistudio worker` runs them")
            self._execute(job_id)

        self._run_job = run_job

    def serve(self, execute: Callable[[str], None]) -> None:
        """What a task does with its job id, in the process that consumes the queue."""
        self._execute = execute

    def enqueue(self, job_id: str, lane: str, delay: float | None = None) -> None:
        # A delayed task goes to Huey's schedule, which its scheduler checks every second.
        self._run_job(job_id, priority=PRIORITY[lane], delay=delay)

    def queued_job_ids(self) -> set[str]:
        """Job ids with a task waiting in Huey (pending or scheduled)."""
        tasks = list(self.huey.pending()) + list(self.huey.scheduled())
        return {task.args[0] for task in tasks if task.args}
