"""Which of a training's checkpoints stay: one rule for the worker's automatic bound
(MISTUDIO_KEEP_CHECKPOINTS, applied as each checkpoint lands) and the storage view's prune (the API),
so both keep the same ones. Torch-free: the API imports it."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple


class Saved(NamedTuple):
    """What the rule reads of one checkpoint (its info.json; an unreadable one counts as automatic)."""

    step: int
    kind: str = "auto"
    held_out_loss: float | None = None


def kept_steps(saved: Sequence[Saved], keep: int) -> set[int]:
    """The steps to keep: the newest ``keep`` (the newest is what a resume starts from), the one of
    lowest held-out loss (the earliest on a tie) and the user's own ("save now" checkpoints are theirs);
    ``keep`` <= 0 keeps every one."""
    ordered = sorted(saved, key=lambda s: s.step)
    if keep <= 0:
        return {s.step for s in ordered}
    kept = {s.step for s in ordered[-keep:]}
    kept |= {s.step for s in ordered if s.kind == "user"}
    scored = [
        (s.held_out_loss, s.step) for s in ordered if s.held_out_loss is not None and math.isfinite(s.held_out_loss)
    ]
    if scored:
        kept.add(min(scored)[1])
    return kept
