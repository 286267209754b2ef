"""A training's checkpoints on disk: written whole or not at all, checked against the free space
first, and kept to a bounded set (MISTUDIO_KEEP_CHECKPOINTS) so a short ``auto_save_interval``
cannot fill the data disk.

Layout: ``trainings/<id>/checkpoints/step_<8 digits>/`` with ``sae.safetensors`` (weights),
``state.pt`` (optimizer, scheduler, step, tokens, RNG, the target-L0 controller's state) and
``info.json`` (step, tokens, when, why it was saved, held-out loss, the activations' scale). A
checkpoint is written under ``<name>.partial`` and renamed when complete, so a folder without that
suffix is always whole.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any, Literal

import msgspec

from appliance.contracts.checkpoint_retention import Saved, kept_steps
from appliance.data.storage import is_disk_full, require_free, storage_error

PARTIAL = ".partial"
# A checkpoint saved because the user asked ("save now") is theirs: never pruned, deleted only by them.
Kind = Literal["auto", "user", "pause", "stop", "requeue"]
# pickle framing, info.json and the safetensors header, on top of the tensors themselves
_OVERHEAD_BYTES = 256 * 1024


class Info(msgspec.Struct):
    step: int
    tokens: int
    saved_at: float
    kind: str = "auto"  # checkpoints written before kinds existed count as automatic ones
    held_out_loss: float | None = None
    # The training loss of the step the checkpoint was saved at (None in checkpoints written before, and
    # in one saved before any step).
    loss: float | None = None
    # The run's activation scale (inputs, targets): a resume takes it from here instead of running a
    # streamed run's model over its first block again. None in checkpoints written before.
    scale: tuple[float, float] | None = None


def checkpoints_dir(folder: Path) -> Path:
    return folder / "checkpoints"


def complete(folder: Path) -> list[Path]:
    """The whole checkpoints of a training folder, oldest first."""
    return sorted(p for p in checkpoints_dir(folder).glob("step_*") if not p.name.endswith(PARTIAL))


def latest(folder: Path) -> Path | None:
    found = complete(folder)
    return found[-1] if found else None


def read_info(path: Path) -> Info | None:
    try:
        return msgspec.json.decode((path / "info.json").read_bytes(), type=Info)
    except (OSError, msgspec.DecodeError):
        return None


def sweep_partials(folder: Path) -> None:
    """Remove what a worker killed mid-write left behind (a run starting or resuming calls this)."""
    for partial in checkpoints_dir(folder).glob(f"step_*{PARTIAL}"):
        shutil.rmtree(partial, ignore_errors=True)


def _tensor_bytes(value: Any) -> int:
    import torch

    if isinstance(value, torch.Tensor):
        return value.numel() * value.element_size()
    if isinstance(value, dict):
        return sum(_tensor_bytes(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return sum(_tensor_bytes(v) for v in value)
    return 0


def estimate_bytes(sae: Any, optimizer: Any) -> int:
    """What the next checkpoint will take: the weights, the optimizer's state (Adam keeps two
    tensors per weight) and the RNG state, from the tensors about to be written."""
    import torch

    return (
        _tensor_bytes(sae.state_dict())
        + _tensor_bytes(optimizer.state_dict()["state"])
        + _tensor_bytes(torch.get_rng_state())
        + _OVERHEAD_BYTES
    )


def save(
    folder: Path,
    sae: Any,
    optimizer: Any,
    scheduler: Any,
    step: int,
    tokens: int,
    *,
    kind: Kind,
    held_out_loss: float | None,
    scale: tuple[float, float],
    loss: float | None = None,
    control: dict[str, float] | None = None,
    reserve_mb: int,
    keep: int,
) -> Path:
    """Write a checkpoint at ``step`` (replacing one at the same step), then prune. Raises
    INSUFFICIENT_STORAGE, before writing anything, when the disk would keep less than its reserve, and
    after removing the partial write when the disk fills up anyway. ``control``: the target-L0
    controller's state (``sparsity_control``), for an exact resume; ``loss``: the step's training loss."""
    import torch
    from safetensors.torch import save_file

    path = checkpoints_dir(folder) / f"step_{step:08d}"
    partial = path.with_name(path.name + PARTIAL)
    shutil.rmtree(partial, ignore_errors=True)
    what = f"the checkpoint at step {step:,}"
    require_free(checkpoints_dir(folder), estimate_bytes(sae, optimizer), reserve_mb, what)
    try:
        partial.mkdir(parents=True)
        save_file(
            {k: v.detach().contiguous().cpu() for k, v in sae.state_dict().items()}, str(partial / "sae.safetensors")
        )
        # Through a Python file: torch's own writer reports a full disk without its errno.
        with open(partial / "state.pt", "wb") as out:
            torch.save(
                {
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "step": step,
                    "tokens": tokens,
                    "rng": torch.get_rng_state(),
                    **({} if control is None else {"sparsity_control": control}),
                },
                out,
            )
        info = Info(
            step=step,
            tokens=tokens,
            saved_at=time.time(),
            kind=kind,
            held_out_loss=held_out_loss,
            loss=loss,
            scale=scale,
        )
        (partial / "info.json").write_bytes(msgspec.json.encode(info))
    except BaseException as exc:
        shutil.rmtree(partial, ignore_errors=True)
        if is_disk_full(exc):
            raise storage_error(exc, what, folder) from exc
        raise
    shutil.rmtree(path, ignore_errors=True)
    partial.rename(path)
    prune(folder, keep)
    return path


def prune(folder: Path, keep: int) -> list[int]:
    """Delete the checkpoints outside the bounded set: the newest ``keep`` (the newest is what a
    resume starts from), the one of lowest held-out loss and the user's own; 0 keeps all. Returns
    the steps deleted."""
    if keep <= 0:
        return []
    found = [(path, step_of(path), read_info(path)) for path in complete(folder)]
    kept = kept_steps([saved(step, info) for _, step, info in found], keep)
    deleted = []
    for path, step, _ in found:
        if step not in kept:
            shutil.rmtree(path, ignore_errors=True)
            deleted.append(step)
    return deleted


def step_of(path: Path) -> int:
    return int(path.name.split("_")[1].split(".")[0])


def saved(step: int, info: Info | None) -> Saved:
    """What the retention rule reads of a checkpoint (an unreadable info.json counts as automatic)."""
    return Saved(step) if info is None else Saved(step, info.kind, info.held_out_loss)
