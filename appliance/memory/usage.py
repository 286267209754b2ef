"""A job's memory as it really was: the plan admission made for it and the worker's peak while it ran
(docs/ARCHITECTURE.md, "Memory is admitted"). The runner wraps every job in one; admission records the
plan in it. Never imports torch: it reads CUDA's figures only where a job has already loaded it.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable
from typing import Any

MB = 2**20
SAMPLE_S = 0.02  # a model's load converts tensor by tensor in well under a second: sampled often enough


def rss_bytes() -> int:
    """The worker's resident memory now (anonymous and file-backed pages: a memory-mapped model is resident)."""
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _cuda() -> Any | None:
    torch = sys.modules.get("torch")
    try:
        return torch if torch is not None and torch.cuda.is_initialized() else None
    except Exception:  # noqa: BLE001
        return None


class JobMemory:
    """The peak of the worker's resident memory (sampled) plus, once CUDA is in use, its allocator's peak
    (not part of the resident set, on a discrete GPU or on Jetson's unified memory alike).

    ``plan`` keeps the largest of the plans made during the run: the resident memory when admitted plus what
    admission reserved, the figure the peak is measured against. ``on_plan`` is told each new plan, in MB.
    """

    def __init__(self, on_plan: Callable[[int], object] | None = None, interval: float = SAMPLE_S):
        self.planned: int | None = None
        self._rss_peak = 0
        self._on_plan = on_plan
        self._interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def plan(self, reserved: int) -> None:
        planned = rss_bytes() + reserved
        if self.planned is None or planned > self.planned:
            self.planned = planned
            if self._on_plan is not None:
                self._on_plan(round(planned / MB))

    @property
    def planned_mb(self) -> int | None:
        return None if self.planned is None else round(self.planned / MB)

    def peak(self) -> int:
        """The peak so far, in bytes (resident set sampled, CUDA's peak reserved)."""
        self._rss_peak = max(self._rss_peak, rss_bytes())
        torch = _cuda()
        return self._rss_peak + (int(torch.cuda.max_memory_reserved()) if torch is not None else 0)

    def peak_mb(self) -> int:
        return round(self.peak() / MB)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self._rss_peak = max(self._rss_peak, rss_bytes())

    def __enter__(self) -> "JobMemory":
        torch = _cuda()
        if torch is not None:
            torch.cuda.reset_peak_memory_stats()  # the peak of this job, not of the worker's life
        self._rss_peak = rss_bytes()
        self._thread = threading.Thread(target=self._run, name="job-memory", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.peak()
