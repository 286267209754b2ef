"""``MISTUDIO_TORCH_THREADS`` in the worker: the size of torch's CPU thread pools.

Torch is imported by the first job that needs it, not at start (2 s and 240 MB the idle worker would
otherwise hold), so the setting reaches it two ways: the worker exports ``OMP_NUM_THREADS`` and
``MKL_NUM_THREADS`` at start, from which torch sizes its intra-op pool when it is imported; and once
torch is loaded, the runner sets both pools with torch's own calls around every job (the inter-op
pool has no variable, and can only be sized before its first use, which eager CPU work never makes).
0 leaves torch's defaults (one thread per core) and the variables as they are.
"""

from __future__ import annotations

import logging
import os
import sys

log = logging.getLogger("mistudio.worker")


def export(threads: int) -> None:
    """At worker start, before anything imports torch."""
    if threads > 0:
        for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[name] = str(threads)


def apply(threads: int) -> None:
    """Both pools to ``threads`` if torch is loaded in this process; nothing is imported here."""
    torch = sys.modules.get("torch")
    if threads <= 0 or torch is None:
        return
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    if torch.get_num_interop_threads() != threads:
        try:
            torch.set_num_interop_threads(threads)
        except RuntimeError as exc:  # the pool already ran work (or another caller sized it): keep it
            log.warning("torch's inter-op pool stays at %d threads: %s", torch.get_num_interop_threads(), exc)
            return
        log.info(
            "torch: %d intra-op and %d inter-op threads (MISTUDIO_TORCH_THREADS)",
            torch.get_num_threads(),
            torch.get_num_interop_threads(),
        )
