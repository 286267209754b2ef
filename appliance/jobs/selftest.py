"""A diagnostic job: counts to N with a delay, reporting progress. Proves the queue end to end, and
(with ``memory_mb``) the memory manager's admission through the real worker."""

from __future__ import annotations

import msgspec

from appliance.device.memory import MB, Estimate
from appliance.jobs.context import JobContext


class SelftestParams(msgspec.Struct, forbid_unknown_fields=True):
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


def _count(ctx: JobContext, params: SelftestParams) -> dict[str, int]:
    for step in range(1, params.steps + 1):
        ctx.sleep(params.delay_ms / 1000)
        if params.fail_at == step:
            raise RuntimeError(f"selftest failed on purpose at step {step}")
        if params.oom_at == step:
            raise MemoryError(f"selftest ran out of memory on purpose at step {step}")
        ctx.progress(step / params.steps, f"step {step}/{params.steps}", {"step": step}, force=True)
    if params.torch:
        import torch

        return {"steps": params.steps, "torch_threads": torch.get_num_threads(),
                "torch_interop_threads": torch.get_num_interop_threads()}
    return {"steps": params.steps}


def run(ctx: JobContext) -> dict[str, int]:
    params = msgspec.convert(ctx.params, SelftestParams)
    if not params.memory_mb:
        return _count(ctx, params)
    from appliance.jobs.runner import memory_manager

    with memory_manager().admit(ctx, Estimate({"selftest": params.memory_mb * MB})):
        return _count(ctx, params)
