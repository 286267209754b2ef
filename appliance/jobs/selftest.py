"""A diagnostic job: counts to N with a delay, reporting progress. Proves the queue end to end."""

from __future__ import annotations

import msgspec

from appliance.jobs.context import JobContext


class SelftestParams(msgspec.Struct, forbid_unknown_fields=True):
    steps: int = 10
    delay_ms: int = 100
    # Fail on purpose at this step (1-based), to exercise the failure path.
    fail_at: int | None = None


def run(ctx: JobContext) -> dict[str, int]:
    params = msgspec.convert(ctx.params, SelftestParams)
    for step in range(1, params.steps + 1):
        ctx.sleep(params.delay_ms / 1000)
        if params.fail_at == step:
            raise RuntimeError(f"selftest failed on purpose at step {step}")
        ctx.progress(step / params.steps, f"step {step}/{params.steps}", {"step": step}, force=True)
    return {"steps": params.steps}
