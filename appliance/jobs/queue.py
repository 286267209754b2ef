"""The Huey transport. A task carries only a job id; the job row says what to do.

The API builds the same queue to enqueue; only the worker consumes it. The task body imports the
runner lazily so enqueueing never pulls in job handlers (or torch).
"""

from __future__ import annotations

from pathlib import Path

from huey import SqliteHuey

from appliance.jobs.registry import PRIORITY


class JobQueue:
    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        # results=False: outcomes live in the job table, not in Huey's result store.
        self.huey = SqliteHuey(name="mistudio", filename=str(path), results=False, utc=True)

        @self.huey.task(name="run_job", context=True)
        def run_job(job_id: str, task=None) -> None:
            from appliance.jobs.runner import execute

            execute(job_id)

        self._run_job = run_job

    def enqueue(self, job_id: str, lane: str, delay: float | None = None) -> None:
        # A delayed task goes to Huey's schedule, which its scheduler checks every second.
        self._run_job(job_id, priority=PRIORITY[lane], delay=delay)

    def queued_job_ids(self) -> set[str]:
        """Job ids with a task waiting in Huey (pending or scheduled)."""
        tasks = list(self.huey.pending()) + list(self.huey.scheduled())
        return {task.args[0] for task in tasks if task.args}
