"""Parameters of the diagnostic job (``selftest``, ``selftest.heavy``)."""

from __future__ import annotations

import msgspec


class SelftestParams(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    steps: int = 10
    delay_ms: int = 100
    # Fail on purpose at this step (1-based), to exercise the failure path.
    fail_at: int | None = None
    # Hold this much of the memory budget while running (admitted like any heavy job).
    memory_mb: int | None = None
    # Raise MemoryError at this step, as a job that runs out of memory would.
    oom_at: int | None = None
    # Load torch and report the sizes of its CPU thread pools in this worker (MISTUDIO_TORCH_THREADS).
    torch: bool = False
