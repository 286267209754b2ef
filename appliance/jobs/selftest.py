"""A diagnostic job: counts to N with a delay, reporting progress. Proves the queue end to end, and
(with ``memory_mb``) the memory manager's admission through the real worker."""

from __future__ import annotations

from appliance.contracts.params.selftest import SelftestParams
from appliance.jobs.context import JobContext
from appliance.memory.admission import MB, Estimate


def _count(ctx: JobContext, params: SelftestParams) -> dict[str, int]:
    for step in range(1, params.steps + 1):
        ctx.sleep(params.delay_ms / 1000)
        if params.fail_at == step:
            raise RuntimeError(f"selftest failed on purpose at step {step}")
        if params.oom_at == step:
            raise MemoryError(f"selftest ran out of memory on purpose at step {step}")
        ctx.progress(step / params.steps, f"step {step}/{params.steps}", step=step, force=True)
    if params.torch:
        import torch

        return {
            "steps": params.steps,
            "torch_threads": torch.get_num_threads(),
            "torch_interop_threads": torch.get_num_interop_threads(),
        }
    return {"steps": params.steps}


def run(ctx: JobContext, params: SelftestParams) -> dict[str, int]:
    if not params.memory_mb:
        return _count(ctx, params)
    with ctx.memory.admit(ctx, Estimate({"selftest": params.memory_mb * MB})):
        return _count(ctx, params)
