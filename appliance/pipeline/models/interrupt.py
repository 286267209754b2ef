"""Cancel, pause and stop inside a forward pass: a check before every decoder block of a model.

A job notices its controls where it calls ``ctx.check()``. Between batches is not enough: one batch
of a 1B model, or a streamed training's shuffle-buffer block, runs for minutes. While a stage runs a
model it wraps the work in ``interruptible(model, ctx.check)``: each decoder block's forward
pre-hook calls the check, so the ``JobInterrupted`` it raises aborts the forward pass before the next
block. The time to notice is then one block's, whatever the batch, the buffer or the model's depth.

Nothing a half-run forward computed is kept: activations go to ``.partial`` folders, SAE steps and
labels are written only after their forward passes return, and a streamed training's block is
recomputed on resume from the checkpoint its pause writes (the order of batches is fixed by the seed).

The hooks fire only for the thread that attached them: a cached model (``models.cache``) can be run
by another job's thread, whose forward passes answer to that job's controls. They are removed when
the block ends, so a model kept between jobs carries none of them.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Any

from appliance.jobs.context import JobInterrupted
from appliance.pipeline.models.architecture import find_layers

log = logging.getLogger("mistudio.jobs")


class Interruptible:
    """The pre-hooks on ``model``'s decoder blocks that call ``check`` (none when it is None: code run
    outside a job). A context manager; ``remove`` takes them off where the owner keeps them beyond one
    block, as a streamed source does."""

    def __init__(self, model: Any, check: Callable[[], None] | None):
        self.handles: list[Any] = []
        if check is None:
            return
        _, layers = find_layers(model)
        owner = threading.get_ident()
        count = len(layers)

        def before(index: int) -> Callable[..., None]:
            def hook(_module: Any, _args: Any) -> None:
                if threading.get_ident() != owner:
                    return
                try:
                    check()
                except JobInterrupted:
                    log.debug("interrupted inside a forward pass, before block %d of %d", index, count)
                    raise

            return hook

        self.handles = [block.register_forward_pre_hook(before(i)) for i, block in enumerate(layers)]

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles = []

    def __enter__(self) -> Interruptible:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.remove()
