"""The worker's memory manager: one budget for all jobs on a unified-memory device (docs/ARCHITECTURE.md,
"Memory is admitted").

Jobs say what they need (:class:`Estimate`) before they start; the manager admits them, makes them
wait while other jobs hold memory, or refuses at once, with a suggestion, what can never fit. It
never imports torch itself: it only uses it when a job has already loaded it.

Waiting is first come, first served without blocking: jobs that wait stand in line, and memory that
an earlier job in line can use now is kept for it, so a newer job may pass only with memory nobody
ahead of it can use yet (a small job still runs beside a training while a big one waits for the
training to end). A job whose context sets ``defer_memory_wait`` (the worker's interactive jobs)
does not wait on its thread: :class:`MemoryBusy` sends it back to the queue, keeping its place in
line, and the thread serves the next job.
"""

from __future__ import annotations

import gc
import logging
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, TypeVar, cast

from appliance.config import Settings
from appliance.device.procfs import meminfo_kb
from appliance.errors import InsufficientMemory
from appliance.memory.checkpoint import read_checkpoint

log = logging.getLogger("mistudio.memory")

MB = 2**20
BYTES_PER_DTYPE = {
    "fp32": 4,
    "float32": 4,
    "fp16": 2,
    "float16": 2,
    "bf16": 2,
    "bfloat16": 2,
    "int8": 1,
    "q8": 1,
    "q4": 0.5,
}
# Room left for the OS, the API and allocator slack when comparing with live free memory.
SAFETY_BYTES = 256 * MB
# What the worker grows by when its first model-loading job imports torch and transformers' model code
# (measured: 350-365 MB with torch 2.13 CPU and transformers 5.24, beside the weights); counted once, by that job.
LIBRARIES_BYTES = 400 * MB
# The loader's allocator slack beside the tensors in flight (measured: 24-30 MB on a 12 x 768 model).
LOAD_SLACK_BYTES = 32 * MB
WAIT_POLL_S = 0.2
# A place in line not claimed again for this long is given up (its job was cancelled while queued, or
# it went missing): jobs that wait poll every WAIT_POLL_S, deferred ones come back every second or two.
WAITER_TTL_S = 60.0
T = TypeVar("T")


@dataclass(frozen=True)
class Estimate:
    parts: dict[str, int]

    @property
    def total(self) -> int:
        return int(sum(self.parts.values()))

    def describe(self) -> str:
        return ", ".join(f"{name} {size / MB:.0f} MB" for name, size in self.parts.items())


def bytes_per(dtype: str) -> float:
    try:
        return BYTES_PER_DTYPE[dtype.lower()]
    except KeyError:
        raise ValueError(f"unknown dtype {dtype!r}; known: {', '.join(BYTES_PER_DTYPE)}") from None


def weights_part(dtype: str) -> str:
    """The name of the weights' part, with their precision (the refusal's advice reads it)."""
    return f"model weights ({dtype.lower()})"


def estimate_model(n_params: int, dtype: str, checkpoint: str | Path | None = None) -> Estimate:
    """The weights (n_params x bytes per parameter; q4 packs two per byte) and, given the model's folder,
    what loading it costs beside them.

    A checkpoint loaded at its own precision on the CPU is memory-mapped: its pages are the weights. One
    that changes precision (or goes to a GPU) is read a tensor at a time (appliance.pipeline.models.loading):
    the loader holds its largest tensors as stored, one per thread, and some allocator slack. With a
    readable safetensors header the weights are counted from it, which also serves a model not yet
    registered (import).
    """
    stored = read_checkpoint(checkpoint) if checkpoint is not None else None
    if stored is not None:
        n_params = stored.parameters
    elif checkpoint is not None and n_params <= 0:  # a pickled checkpoint: torch reads it whole, then converts
        pickled = sum(f.stat().st_size for f in Path(checkpoint).glob("*.bin"))
        return Estimate({weights_part(dtype): pickled, "model loading": pickled})
    parts = {weights_part(dtype): int(n_params * bytes_per(dtype))}
    on_gpu = _torch_cuda() is not None
    if checkpoint is not None and dtype.lower() == "q8" and not on_gpu:
        parts["model loading"] = int(n_params * 4)  # the CPU quantizes a whole fp32 copy (loading.load)
    elif stored is not None and (stored.converts_to(dtype) or on_gpu):
        parts["model loading"] = stored.in_flight_bytes() + LOAD_SLACK_BYTES
    return Estimate(parts)


def estimate_activations(n_tokens: int, d: int, dtype: str = "fp16", n_tensors: int = 1) -> Estimate:
    """A buffer of n_tokens x d values for each hooked tensor (fp16 on disk and in buffers)."""
    return Estimate({"activation buffer": int(n_tokens * d * n_tensors * bytes_per(dtype))})


def estimate_sae_training(
    d_in: int, d_sae: int, batch_size: int, dtype: str = "fp32", optimizer: str = "adam"
) -> Estimate:
    """SAE weights (W_enc, W_dec, b_enc, b_dec) + gradients + optimizer state + one batch.

    Adam keeps two fp32 moments per parameter; the batch holds the input and reconstruction
    (2 x d_in) and the pre- and post-activation latents (2 x d_sae) per token, plus their gradients.
    """
    params = 2 * d_in * d_sae + d_sae + d_in
    width = bytes_per(dtype)
    states = {"adam": 2, "adamw": 2, "sgd": 0, "rmsprop": 1}.get(optimizer.lower(), 2)
    return Estimate(
        {
            "sae weights": int(params * width),
            "gradients": int(params * width),
            "optimizer state": int(params * 4 * states),
            "batch": int(batch_size * (2 * d_in + 2 * d_sae) * width * 2),
        }
    )


# What shrinks each part of an estimate, for the refusal's advice.
_SHRINKS = {
    "batch": "a smaller SAE batch size or d_sae",
    "sae weights": "a smaller d_sae",
    "gradients": "a smaller d_sae",
    "optimizer state": "a smaller d_sae",
    "batch activations": "a smaller batch size",
    "forward batch": "a smaller batch size",
    "shard buffers": "a smaller MISTUDIO_ACTIVATION_SHARD_MB",
    "shuffle buffer": "a smaller MISTUDIO_STREAM_BUFFER_TOKENS",
    "activation buffer": "fewer tokens",
    "model loading": "a smaller model",
    "generation kv cache": "a smaller labeller model",
    "generation working set": "a smaller labeller model",
}


def advice(estimate: Estimate, overflow: int) -> str:
    """What to make smaller: the largest parts, as many as it takes to cover ``overflow`` bytes. A model's
    precision is suggested only for weights in fp32 (one already in fp16/bf16 is told to use a smaller model)."""
    said: list[str] = []
    covered = 0
    for name, size in sorted(estimate.parts.items(), key=lambda part: -part[1]):
        if covered >= overflow and said:
            break
        covered += size
        if name == weights_part("fp32"):
            hint = "a smaller model, or fp16/bf16 instead of fp32"
        elif name.startswith("model weights"):
            hint = "a smaller model"
        else:
            hint = _SHRINKS.get(name, "a smaller batch size or model")
        if hint not in said:
            said.append(hint)
    return "; ".join(said)


class MemoryBusy(Exception):
    """The job fits the budget but not now, and its context asked not to wait on its thread."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


def physical_memory_bytes(settings: Settings) -> int:
    if settings.memory_total_mb:
        return int(settings.memory_total_mb * MB)
    return meminfo_kb().get("MemTotal", 0) * 1024


def _torch_cuda() -> Any | None:
    """torch, if a job has already imported it and CUDA works; never imports it."""
    torch = sys.modules.get("torch")
    try:
        return torch if torch is not None and torch.cuda.is_available() else None
    except Exception:  # noqa: BLE001
        return None


def available_memory_bytes() -> int:
    """Live free memory: MemAvailable; on a discrete GPU also the device's free memory (the smaller)."""
    free = meminfo_kb().get("MemAvailable", 0) * 1024
    torch = _torch_cuda()
    if torch is not None and not torch.cuda.get_device_properties(0).is_integrated:
        free = min(free, torch.cuda.mem_get_info()[0])
    return free


def release_cached_memory() -> None:
    gc.collect()
    torch = _torch_cuda()
    if torch is not None:
        torch.cuda.empty_cache()


def is_oom(exc: BaseException) -> bool:
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


@dataclass
class _Cached:
    value: Any
    size: int
    last_used: float


class ModelCache:
    """Loaded models kept for interactive work; their memory counts against the budget."""

    def __init__(self) -> None:
        self._items: OrderedDict[str, _Cached] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def size(self) -> int:
        with self._lock:
            return sum(item.size for item in self._items.values())

    def get(self, key: str) -> Any | None:
        with self._lock:
            item = self._items.get(key)
            if item is None:
                return None
            item.last_used = time.monotonic()
            self._items.move_to_end(key)
            return item.value

    def put(self, key: str, value: Any, size: int) -> None:
        with self._lock:
            self._items[key] = _Cached(value, size, time.monotonic())
            self._items.move_to_end(key)

    def _drop(self, keys: list[str]) -> list[str]:
        for key in keys:
            del self._items[key]
        if keys:
            log.info("unloaded models: %s", ", ".join(keys))
        return keys

    def evict_idle(self, idle_s: float) -> list[str]:
        now = time.monotonic()
        with self._lock:
            dropped = self._drop([k for k, item in self._items.items() if now - item.last_used >= idle_s])
        if dropped:
            release_cached_memory()
        return dropped

    def evict_to_fit(self, bytes_needed: int) -> list[str]:
        """Unload least recently used models until ``bytes_needed`` are freed (or none are left)."""
        with self._lock:
            victims, freed = [], 0
            for key, item in self._items.items():  # oldest first
                if freed >= bytes_needed:
                    break
                victims.append(key)
                freed += item.size
            dropped = self._drop(victims)
        if dropped:
            release_cached_memory()
        return dropped


@dataclass
class MemoryManager:
    physical_bytes: int
    fraction: float
    available: Callable[[], int] = available_memory_bytes
    safety_bytes: int = SAFETY_BYTES
    models: ModelCache = field(default_factory=ModelCache)
    _reserved: dict[str, int] = field(default_factory=dict)
    # Jobs waiting for memory, first come first: holder -> (bytes needed, time.monotonic() last seen).
    _waiters: OrderedDict[str, tuple[int, float]] = field(default_factory=OrderedDict)
    _lock: threading.RLock = field(default_factory=threading.RLock)  # admit() holds it while calling reserved()

    @classmethod
    def from_settings(cls, settings: Settings) -> "MemoryManager":
        return cls(physical_memory_bytes(settings), settings.max_memory_fraction)

    @property
    def budget(self) -> int:
        return int(self.physical_bytes * self.fraction)

    def reserved(self, excluding: str | None = None) -> int:
        with self._lock:
            held = sum(size for holder, size in self._reserved.items() if holder != excluding)
        return held + self.models.size

    def check_budget(self, estimate: Estimate) -> None:
        """Raise INSUFFICIENT_MEMORY (with a suggestion) if ``estimate`` exceeds the whole budget."""
        if estimate.total > self.budget:
            raise self._never_fits(estimate)

    def _never_fits(self, estimate: Estimate) -> InsufficientMemory:
        need, budget = estimate.total / MB, self.budget / MB
        shrink_to = self.budget / estimate.total
        return InsufficientMemory(
            f"This job needs {need:,.0f} MB but the memory budget is {budget:,.0f} MB "
            f"({self.fraction:.0%} of {self.physical_bytes / MB:,.0f} MB). Make it about {shrink_to:.0%} of its size "
            f"({advice(estimate, estimate.total - self.budget)}), or raise MISTUDIO_MAX_MEMORY_FRACTION.",
            details={
                "needed_mb": round(need, 1),
                "budget_mb": round(budget, 1),
                "parts_mb": {k: round(v / MB, 1) for k, v in estimate.parts.items()},
            },
        )

    def _room(self, holder: str) -> int:
        return min(self.budget - self.reserved(excluding=holder), self.available() - self.safety_bytes)

    def _fits_now(self, holder: str, need: int) -> bool:
        """Whether ``need`` fits in what is free less what earlier jobs in line can use now."""
        with self._lock:
            self._forget_stale()
            room = self._room(holder)
            for other, (wanted, _) in self._waiters.items():  # oldest first
                if other == holder:
                    break
                if wanted <= room:
                    room -= wanted  # kept for the job ahead, which takes it at its next try
            return need <= room

    def _stand_in_line(self, holder: str, need: int) -> None:
        with self._lock:
            self._waiters[holder] = (need, time.monotonic())  # an existing entry keeps its place

    def _forget_stale(self) -> None:
        cutoff = time.monotonic() - WAITER_TTL_S
        for holder in [h for h, (_, seen) in self._waiters.items() if seen < cutoff]:
            del self._waiters[holder]

    def forget(self, holder: str) -> None:
        """Give up ``holder``'s place in line (its job ended while it waited)."""
        with self._lock:
            self._waiters.pop(holder, None)

    def _evict_if_it_helps(self, holder: str, need: int) -> None:
        # Unloading cached models is worth it only if their memory would make the job fit.
        if need <= self._room(holder) + self.models.size:
            self.models.evict_to_fit(need)

    def ready(self, holder: str) -> bool:
        """For a job waiting in line: whether it would be admitted now (True for one not in line).

        Lets the worker keep a deferred job in the queue without starting it again until it can run."""
        with self._lock:
            entry = self._waiters.get(holder)
        if entry is None:
            return True
        need = entry[0]
        self._stand_in_line(holder, need)
        if self._fits_now(holder, need):
            return True
        self._evict_if_it_helps(holder, need)
        return self._fits_now(holder, need)

    @contextmanager
    def admit(
        self, ctx: Any, estimate: Estimate, shrink: Callable[[Estimate], Estimate | None] | None = None
    ) -> Iterator[Estimate]:
        """Reserve ``estimate`` for the ``with`` block, waiting while other jobs hold memory.

        ``shrink`` (optional) returns a smaller estimate for a job that can work with less (a smaller
        batch), or None; it is tried while the estimate exceeds the whole budget. The estimate that
        was admitted is yielded.
        """
        holder = getattr(ctx, "job_id", None) or f"anon-{id(ctx)}"
        while estimate.total > self.budget and shrink is not None:
            smaller = shrink(estimate)
            if smaller is None or smaller.total >= estimate.total:
                break
            estimate = smaller
        if any(name.startswith("model weights") for name in estimate.parts) and "transformers" not in sys.modules:
            estimate = Estimate({**estimate.parts, "libraries": LIBRARIES_BYTES})  # this job imports them
        self.check_budget(estimate)
        need, waiting = estimate.total, False
        try:
            while True:
                with self._lock:
                    if self._fits_now(holder, need):
                        self._reserved[holder] = self._reserved.get(holder, 0) + need
                        self._waiters.pop(holder, None)
                        break
                    self._stand_in_line(holder, need)
                if not waiting:
                    self._evict_if_it_helps(holder, need)
                    if self._fits_now(holder, need):
                        continue
                    waiting = True
                    free = max(0, self._room(holder))
                    message = f"Waiting for memory: needs {need / MB:,.0f} MB, {free / MB:,.0f} MB free"
                    if getattr(ctx, "defer_memory_wait", False):
                        raise MemoryBusy(message)  # keeps its place in line (see the module docstring)
                    log.info("%s waits for memory: needs %.0f MB, %.0f MB free", holder, need / MB, free / MB)
                    if hasattr(ctx, "status"):
                        ctx.status(message)
                if hasattr(ctx, "sleep"):
                    ctx.sleep(WAIT_POLL_S)  # raises when the job is cancelled while it waits
                else:
                    time.sleep(WAIT_POLL_S)
        except MemoryBusy:
            raise
        except BaseException:
            self.forget(holder)  # cancelled while it waited here: nobody keeps memory for it
            raise
        usage = getattr(ctx, "usage", None)
        if usage is not None:
            usage.plan(self._reserved.get(holder, 0))  # with what the job holds already (an admission inside one)
        try:
            yield estimate
        finally:
            with self._lock:
                left = self._reserved.get(holder, 0) - estimate.total
                if left > 0:
                    self._reserved[holder] = left
                else:
                    self._reserved.pop(holder, None)
            release_cached_memory()


def run_with_oom_retry(
    fn: Callable[[int], T], batch_size: int, *, min_batch: int = 1, ctx: Any = None
) -> tuple[T, int]:
    """Call ``fn(batch_size)``; on out-of-memory free caches, halve the batch and try again."""
    while True:
        try:
            return fn(batch_size), batch_size
        except Exception as exc:  # noqa: BLE001 - only OOM is handled; the rest re-raises
            if not is_oom(exc):
                raise
            release_cached_memory()
            smaller = batch_size // 2
            if smaller < min_batch:
                raise InsufficientMemory(
                    f"Out of memory even at batch size {batch_size}: use a smaller model or precision, or free "
                    "memory used by other programs",
                    details={"batch_size": batch_size},
                ) from exc
            log.warning("out of memory at batch %d: retrying with %d", batch_size, smaller)
            if ctx is not None and hasattr(ctx, "status"):
                ctx.status(f"Out of memory at batch {batch_size}: retrying with {smaller}")
            batch_size = smaller


@contextmanager
def heap_reuse() -> Iterator[None]:
    """Keep freed memory in the process heap while a CPU training loop runs.

    glibc serves blocks over 32 MB with fresh mmap()s and returns them on free(), so every step of
    an SAE on the CPU page-faults its largest tensors (the [batch, d_sae] activations) into existence
    again: measured at 15-25% of a step. With mmap off and the trim threshold raised, the same
    memory is reused step after step; on leaving, the defaults come back and the heap is trimmed, so
    the memory returns to the system. A no-op where glibc is not the allocator.
    """
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt, trim = libc.mallopt, libc.malloc_trim
    except (OSError, AttributeError):
        yield
        return
    M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4
    mallopt(M_MMAP_MAX, 0)
    mallopt(M_TRIM_THRESHOLD, 1 << 30)
    try:
        yield
    finally:
        mallopt(M_MMAP_MAX, 65536)  # glibc's defaults
        mallopt(M_TRIM_THRESHOLD, 128 * 1024)
        trim(0)


@cache
def _malloc_trim() -> Callable[[int], int] | None:
    import ctypes
    import ctypes.util

    try:
        return cast(Callable[[int], int], ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim)
    except (OSError, AttributeError):
        return None


def trim_heap() -> None:
    """Hand the heap's free pages back to the system, between the batches of a loop whose large tensors change
    size from batch to batch (a spliced evaluation's logits, sized by each batch's tokens).

    glibc keeps such tensors in the heap (below its mmap threshold, which heap_reuse's mallopt calls also stop
    adapting), and freed blocks of the wrong size are seldom reused whole: the worker's resident memory grew
    batch after batch, by 0-90 MB over a 4 x 512 model's 8 evaluation batches, varying from run to run, past
    what the job was planned for. A few milliseconds; a no-op where glibc is not the allocator.
    """
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
