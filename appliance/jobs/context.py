"""What a running job handler sees, and its only door to the rest of the appliance: the settings,
the data dir's layout, the database, the memory budget, progress reporting, events and cooperative
control. A handler is called as ``handler(ctx, params)`` with its kind's typed parameters; it reaches
nothing through globals.

Handlers call ``ctx.check()`` (or ``ctx.sleep()``) often; a cancel/pause/stop request set in the job
row is noticed by the worker's supervisor thread within ~0.1 s and raises here, which is how a
running task actually stops (Huey's revoke cannot interrupt a task that has started).
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any, Callable

import msgspec

from appliance.config import Settings
from appliance.contracts.events import PAYLOADS, checked
from appliance.data.database import Database
from appliance.data.layout import DataLayout
from appliance.jobs.records import Job

if TYPE_CHECKING:
    from appliance.memory.admission import MemoryManager
    from appliance.memory.usage import JobMemory

# Controls relayed from the job row. "save" (a training's "save now") is not an interruption: the
# handler takes it with take_save_request() at its next step.
SAVE = "save"


class JobInterrupted(Exception):
    """Raised inside a handler when the job was asked to stop; ``control`` says how."""

    def __init__(self, control: str):
        super().__init__(control)
        self.control = control


class JobContext:
    def __init__(
        self,
        job: Job,
        emit: Callable[..., None],
        report: Callable[..., None],
        progress_type: str,
        topic: str,
        *,
        settings: Settings,
        db: Database,
        memory: MemoryManager,
        min_progress_interval_s: float = 0.1,
    ):
        self.job = job
        self.topic = topic
        self.settings = settings
        self.layout = DataLayout(settings.data_dir)
        self.db = db
        self.memory = memory
        self._emit = emit
        self._report = report
        self._progress_type = progress_type
        self._progress_payload = PAYLOADS[progress_type]
        self._min_interval = min_progress_interval_s
        self._last_progress = 0.0
        self._fraction = 0.0
        self._control: str | None = None
        self._answered: set[str] = set()
        self._save_requested = False
        self._wake = threading.Event()
        # Set by the runner for interactive jobs: memory admission sends the job back to the queue
        # instead of waiting on the worker thread (appliance.memory.admission.MemoryBusy).
        self.defer_memory_wait = False
        # Set by the runner: the job's memory plan (recorded by admission) and the worker's peak as it runs.
        self.usage: JobMemory | None = None

    @property
    def job_id(self) -> str:
        return self.job.id

    # Set by the supervisor thread.
    def request(self, control: str) -> None:
        if control == SAVE:
            self._save_requested = True
            return
        if control in self._answered:  # relayed from the job row at every poll; this one was done
            return
        self._control = control
        self._wake.set()

    def answered(self) -> None:
        """The handler did what the current control asks and goes on to finish its work (a training's
        stop ends its steps; its export and evaluation follow): ``check()`` passes again until another
        control is requested, so a cancel still ends what follows."""
        if self._control is not None:
            self._answered.add(self._control)
        self._control = None
        self._wake.clear()

    def take_save_request(self) -> bool:
        """Whether someone asked for a checkpoint now since the last call (the request is consumed)."""
        asked, self._save_requested = self._save_requested, False
        return asked

    @property
    def control(self) -> str | None:
        return self._control

    def check(self) -> None:
        if self._control is not None:
            raise JobInterrupted(self._control)

    def sleep(self, seconds: float) -> None:
        """Sleep, waking at once if the job is asked to stop."""
        if self._wake.wait(seconds):
            self.check()

    def progress(
        self,
        fraction: float,
        message: str = "",
        *,
        force: bool = False,
        **extras: Any,
    ) -> None:
        """Record progress in the job row and publish a progress event (throttled unless forced).

        The event is the kind's progress Struct (e.g. DatasetProgress); ``extras`` are its own fields
        (``samples=``, ``tokens=``...), and one it does not have is a TypeError."""
        now = time.monotonic()
        if not force and now - self._last_progress < self._min_interval:
            return
        self._last_progress = now
        fraction = min(max(float(fraction), 0.0), 1.0)
        self._fraction = fraction
        self._report(fraction, message)
        payload = self._progress_payload(
            job_id=self.job.id, progress=fraction, message=message, t=time.time(), **extras
        )
        self._emit(self._progress_type, payload, durable=False)

    @property
    def fraction(self) -> float:
        """The progress reported last (0..1)."""
        return self._fraction

    def status(self, message: str) -> None:
        """A new message at the current progress (e.g. "Waiting for memory")."""
        self.progress(self._fraction, message, force=True)

    def event(self, type_: str, payload: msgspec.Struct, durable: bool = True) -> None:
        """Publish ``payload``, the Struct of events of type ``type_`` (appliance.contracts.events); any
        other payload is a programming error (TypeError)."""
        self._emit(type_, checked(type_, payload), durable=durable)
