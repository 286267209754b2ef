"""What a steering comparison says of its own speed: the ``timing`` of POST /api/steering/generate's
answer (and of ``steering.completed``), built by ``appliance.pipeline.steering.generate``. Torch-free."""

from __future__ import annotations

import msgspec


class SteeringTiming(msgspec.Struct, kw_only=True):
    prompt_tokens: int
    generated_tokens: int  # the longer side's
    # Each side's own forward passes and sampling, per token it drew (its prompt pass included; decoding
    # text and streaming events left out): the cost of steering is the difference. None: that side was
    # not generated.
    unsteered_ms_per_token: float | None
    steered_ms_per_token: float | None
    overhead_ratio: float | None  # steered ÷ unsteered per token: 1.0 costs nothing, 1.2 a fifth more
    # The whole generation's wall time per token drawn, both sides together (decoding and streaming
    # included): the comparison's throughput, not either side's speed.
    ms_per_token: float | None
    time_to_first_token_ms: float | None
    total_ms: float
    device: str
    stopped_at_context: bool
