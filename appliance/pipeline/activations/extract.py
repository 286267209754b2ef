"""Activation extraction: stream a dataset's tokens through a model with forward hooks and write the
hooked activations as fp16 safetensors shards with a manifest.

Special tokens' positions (BOS/EOS/PAD..., ``appliance.contracts.special_tokens``) are left out by
default: their activation is the same in every sample, and an SAE trained on it spends latents there.

Memory stays flat whatever the dataset's size: one batch of activations plus one shard buffer per
hook (all buffers together sized by ``MISTUDIO_ACTIVATION_SHARD_MB``) are all that is held. Only real
tokens are stored (no padding), each with its sample index and position in ``tokens_NNNN``
shards, so later stages can find a token's context. The set is written to ``<id>.partial`` and
renamed when complete: a failed or cancelled run leaves nothing.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import msgspec

from appliance.contracts.events import ActivationsUpdated
from appliance.contracts.params.activations import ExtractParams
from appliance.contracts.params.models import HookPoint
from appliance.data import activation_sets
from appliance.data.database import Database
from appliance.data.events import insert as insert_event
from appliance.data.layout import DataLayout
from appliance.errors import InsufficientStorage, ValidationError
from appliance.jobs.context import JobContext
from appliance.jobs.records import Job
from appliance.memory.admission import Estimate, estimate_activations, estimate_model
from appliance.pipeline.models.architecture import InputView, block_output, find_layers
from appliance.pipeline.models.interrupt import Interruptible
from appliance.pipeline.models.loading import load
from appliance.pipeline.prefetch import Prefetched

MANIFEST = "manifest.json"


class _Stop(Exception):
    """Raised by a hook to end a forward pass once the deepest wanted activation is captured."""


def _stop(*_: Any) -> None:
    raise _Stop


def partial_dir(layout: DataLayout, activation_id: str) -> Path:
    """Where a set is written until it is complete (then renamed to its own folder)."""
    final = layout.activations(activation_id)
    return final.with_name(final.name + ".partial")


def as_hook_point(point: HookPoint | Mapping[str, Any]) -> HookPoint:
    """The typed hook point; callers in other stages still hold the architecture's stored dicts."""
    return point if isinstance(point, HookPoint) else msgspec.convert(point, HookPoint)


def token_batches(params: ExtractParams, layout: DataLayout) -> Iterator[tuple[list[int], list[list[int]]]]:
    """(sample indices, token ids) per batch: from the dataset's stored tokenization with this
    tokenizer when there is one, else tokenized here; cut to ``context_length``."""
    from datasets import Dataset, load_from_disk

    from appliance.contracts.tokenization import TokenizeSettings, load_tokenizer

    stored = layout.tokenized_arrow(params.dataset_id, params.tokenizer)
    limit = params.max_samples
    if stored.is_file():
        data = Dataset.from_file(str(stored))
        count = min(len(data), limit or len(data))
        for start in range(0, count, params.batch_size):
            rows = data[start : min(count, start + params.batch_size)]
            yield (
                list(range(start, start + len(rows["length"]))),
                [ids[: min(n, params.context_length)] for ids, n in zip(rows["input_ids"], rows["length"])],
            )
        return
    texts = load_from_disk(str(layout.dataset_arrow(params.dataset_id)))
    count = min(len(texts), limit or len(texts))
    tokenizer = load_tokenizer(
        params.tokenizer,
        layout.root,
        TokenizeSettings(tokenizer=params.tokenizer, max_length=params.context_length, padding="do_not_pad"),
    )
    for start in range(0, count, params.batch_size):
        batch = texts[start : min(count, start + params.batch_size)]["text"]
        encodings = tokenizer.encode_batch(["" if t is None else t for t in batch])
        yield list(range(start, start + len(batch))), [e.ids for e in encodings]


def attach_capture(model: Any, point: HookPoint | Mapping[str, Any], captured: dict[str, Any]) -> Any:
    """Store the hook point's tensor in ``captured[name]`` on each forward pass of ``model``: its
    module's output, or for input points what ``InputView`` reads from the module's input (``mlp_in``:
    the layer norm's value before its affine)."""
    point = as_hook_point(point)
    name, module = point.name, model.get_submodule(point.module)
    if point.input:
        view = InputView(model, point)
        return module.register_forward_pre_hook(
            lambda _m, args, kwargs: captured.__setitem__(name, view.read(args, kwargs)), with_kwargs=True
        )
    return module.register_forward_hook(lambda _m, _i, out: captured.__setitem__(name, block_output(out)))


def pad(batch: list[list[int]]) -> tuple[Any, Any]:
    """(ids, attention mask), both [samples, longest] int64 on the CPU: each sample's tokens from the
    left, zeros after them."""
    import torch

    width = max(len(ids) for ids in batch)
    ids = torch.zeros((len(batch), width), dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for row, tokens in enumerate(batch):
        ids[row, : len(tokens)] = torch.tensor(tokens)
        mask[row, : len(tokens)] = 1
    return ids, mask


def stop_after(model: Any, layer: int) -> Any:
    """Make every forward pass of ``model`` end after block ``layer`` (see ``forward_to_stop``); the
    hook's handle, to remove it."""
    layers_path, _ = find_layers(model)
    return dict(model.named_modules())[f"{layers_path}.{layer}"].register_forward_hook(_stop)


def forward_to_stop(model: Any, ids: Any, mask: Any) -> None:
    """One forward pass without grads, ended by a ``stop_after`` hook (or by the model's end)."""
    import torch

    with torch.inference_mode():
        try:
            model(input_ids=ids, attention_mask=mask, use_cache=False)
        except _Stop:
            pass


class Capture:
    """Forward passes that return the hook points' activations at the real (unpadded) tokens.

    Nothing after the deepest hooked block is needed, so the forward pass stops there (no later
    layers, no vocabulary projection), as SAELens' ``stop_at_layer`` does."""

    def __init__(self, model: Any, points: list[HookPoint] | list[Mapping[str, Any]]):
        typed = [as_hook_point(p) for p in points]
        self.model, self.names = model, [p.name for p in typed]
        self.device = next(model.parameters()).device
        self.captured: dict[str, Any] = {}
        self.handles = [attach_capture(model, p, self.captured) for p in typed]
        self.handles.append(stop_after(model, max(p.layer for p in typed)))

    def __call__(self, batch: list[list[int]]) -> tuple[dict[str, Any], Any, Any]:
        """({name: [real tokens, d] in the model's dtype, on its device}, padded ids, mask) for a
        batch of token id lists."""
        ids, mask = pad(batch)
        forward_to_stop(self.model, ids.to(self.device), mask.to(self.device))
        keep = mask.bool()
        on_device = keep.to(self.device)
        out = {name: self.captured[name][on_device] for name in self.names}
        self.captured.clear()
        return out, ids, keep

    def close(self) -> None:
        for handle in self.handles:
            handle.remove()


class PeakRss:
    """The process's peak resident memory while a job runs (sampled; VmHWM is lifetime-wide)."""

    def __init__(self, interval: float = 0.05):
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(interval,), daemon=True)

    @staticmethod
    def rss() -> int:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def _run(self, interval: float) -> None:
        while not self._stop.wait(interval):
            self.peak = max(self.peak, self.rss())

    def __enter__(self) -> "PeakRss":
        self.peak = self.rss()
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.rss())


class ShardWriter:
    """Fills preallocated fp16 buffers, one per hook, and writes ``{hook}_{NNNN}.safetensors`` and
    ``tokens_{NNNN}.safetensors`` together each time they are full.

    Preallocated rather than a list of batches joined at write time: the join would hold a second copy
    of the shard, and the buffers' pages, once touched, are the same pages for every later shard.
    Two sets of them: a full set is written by a background thread while the next batches fill the
    other, so the disk writes overlap the forward passes instead of stopping them (``run`` gives each
    set half the memory setting). ``flush`` writes what is buffered and waits for every write, raising
    a write's error; ``close`` stops the writer thread after the write under way, so a job that ends
    early leaves nothing writing into the folder its clean-up removes.
    """

    SETS = 2

    def __init__(self, folder: Path, names: list[str], shard_tokens: int, d_model: int):
        from concurrent.futures import Future, ThreadPoolExecutor

        import torch

        self.folder, self.names, self.shard_tokens = folder, names, shard_tokens
        # torch.empty touches no page: the second set costs memory only once a first shard is full.
        self._sets = [
            (
                {n: torch.empty(shard_tokens, d_model, dtype=torch.float16) for n in names},
                torch.empty(shard_tokens, 3, dtype=torch.int64),
            )
            for _ in range(self.SETS)
        ]
        self._writes: list[Future | None] = [None] * self.SETS
        self._current = 0
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="shard-writer")
        self.buffered = 0
        self.shards: list[dict[str, Any]] = []

    def add(self, activations: dict[str, Any], tokens: Any) -> None:
        """Append one batch: ``activations[hook]`` [n, d] (any float dtype and device; stored as fp16)
        and ``tokens`` [n, 3] (sample index, position, token id)."""
        done = 0
        while done < len(tokens):
            take = min(len(tokens) - done, self.shard_tokens - self.buffered)
            rows = slice(self.buffered, self.buffered + take)
            buffers, token_rows = self._sets[self._current]
            for name in self.names:
                buffers[name][rows] = activations[name][done : done + take]
            token_rows[rows] = tokens[done : done + take]
            self.buffered += take
            done += take
            if self.buffered == self.shard_tokens:
                self._hand_off()

    def _hand_off(self) -> None:
        """Queue the current set's write and go on in the other set once that one's last write is done."""
        index, count = len(self.shards), self.buffered
        buffers, token_rows = self._sets[self._current]
        self._writes[self._current] = self._pool.submit(self._write, index, count, buffers, token_rows)
        self.shards.append({"index": index, "tokens": count})
        self.buffered = 0
        self._current = (self._current + 1) % self.SETS
        self._wait(self._current)

    def _wait(self, which: int) -> None:
        write, self._writes[which] = self._writes[which], None
        if write is not None:
            write.result()

    def _write(self, index: int, count: int, buffers: dict[str, Any], token_rows: Any) -> None:
        from safetensors.torch import save_file

        for name in self.names:
            save_file({"activations": buffers[name][:count]}, str(self.folder / f"{name}_{index:04d}.safetensors"))
        save_file({"tokens": token_rows[:count]}, str(self.folder / f"tokens_{index:04d}.safetensors"))

    def flush(self) -> None:
        if self.buffered:
            self._hand_off()
        for which in range(self.SETS):
            self._wait(which)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


def samples_to_extract(params: ExtractParams, layout: DataLayout) -> int:
    """How many samples the job reads, once it is sure the disk can hold them: every token of every
    sample at full context, fp16, per hook (an upper bound), refused before any work is done."""
    from datasets import load_from_disk

    available = len(load_from_disk(str(layout.dataset_arrow(params.dataset_id))))
    samples = min(params.max_samples or available, available)
    needed = samples * params.context_length * params.d_model * 2 * len(params.hook_points)
    free = shutil.disk_usage(layout.root).free
    if needed > free * 0.95:
        raise InsufficientStorage(
            f"The set may need {needed / 1e9:,.2f} GB and {free / 1e9:,.2f} GB are free: "
            "extract fewer samples, layers or hook types",
            details={"needed": needed, "free": free},
        )
    return samples


def memory_estimate(params: ExtractParams, shard_tokens: int) -> Estimate:
    """The model, one batch's activations in fp32 (captured and converted) and the writer's buffers."""
    n_hooks = len(params.hook_points)
    return Estimate(
        {
            **estimate_model(params.parameters, params.precision, checkpoint=params.model_path).parts,
            "batch activations": estimate_activations(
                params.batch_size * params.context_length, params.d_model, "fp32", n_hooks * 2
            ).total,
            "shard buffers": estimate_activations(
                shard_tokens, params.d_model, "fp16", ShardWriter.SETS * n_hooks
            ).total,
        }
    )


class Totals:
    """What the pass counted: samples, tokens, and per hook the sums of the token norms, the values and
    their squares, kept on the model's device in fp64: reading them back per batch (.item()) would wait
    for the GPU three times a hook."""

    def __init__(self, names: list[str], device: Any):
        import torch

        self.sums = {n: torch.zeros(3, dtype=torch.float64, device=device) for n in names}
        self.tokens = self.samples = 0
        self.excluded = 0  # special-token positions left out

    def hook_stats(self, name: str, d_model: int) -> dict[str, float]:
        norm_sum, value_sum, square_sum = (float(v) for v in self.sums[name])
        values = self.tokens * d_model
        mean = value_sum / values
        return {
            "mean_norm": round(norm_sum / self.tokens, 5),
            "mean": round(mean, 6),
            "std": round(max(0.0, square_sum / values - mean**2) ** 0.5, 6),
        }


def extract_batches(
    ctx: JobContext,
    batches: Iterator[tuple[list[int], list[list[int]]]],
    capture: Capture,
    writer: ShardWriter,
    totals: Totals,
    samples: int,
    excluded: list[int] | None = None,
) -> None:
    """Every batch through the model, its activations summed into ``totals`` and handed to ``writer``;
    the positions of ``excluded`` token ids are neither summed nor stored."""
    import torch

    drop = torch.tensor(excluded or [], dtype=torch.long)
    for indices, batch in batches:
        ctx.check()
        if not any(batch):
            continue
        captured, ids, keep = capture(batch)
        width = ids.shape[1]
        stored = keep & ~torch.isin(ids, drop) if len(drop) else keep
        # The captured rows are the real tokens in order; those of excluded tokens go.
        chosen = stored[keep].to(capture.device) if len(drop) else None
        out: dict[str, Any] = {}
        for name in capture.names:
            acts = captured[name] if chosen is None else captured[name][chosen]
            x = acts.float()  # the model's own tensor when it is fp32
            totals.sums[name] += torch.stack([x.norm(dim=-1).sum(), x.sum(), x.square().sum()])
            # The writer's fp16 buffers convert on copy; off the CPU, halve the transfer first.
            out[name] = acts if acts.device.type == "cpu" else acts.to(torch.float16)
        positions = torch.arange(width).expand(len(batch), width)[stored]
        sample_index = torch.tensor(indices).unsqueeze(1).expand(len(batch), width)[stored]
        writer.add(out, torch.stack([sample_index, positions, ids[stored]], dim=1).to(torch.int64))
        totals.tokens += int(stored.sum())
        totals.excluded += int(keep.sum()) - int(stored.sum())
        totals.samples += len(batch)
        ctx.progress(
            0.02 + 0.95 * totals.samples / samples,
            f"{totals.samples:,} of {samples:,} samples, {totals.tokens:,} tokens",
            samples=totals.samples,
            tokens=totals.tokens,
        )
    writer.flush()


def manifest_of(
    params: ExtractParams,
    totals: Totals,
    shards: list[dict[str, Any]],
    elapsed: float,
    peak_rss: int,
    excluded: list[int] | None = None,
) -> dict[str, Any]:
    """The set's manifest.json: what was extracted, its shards, the token ids left out (and how many
    positions), and per hook its shape and statistics."""
    if totals.tokens == 0:
        why = "every token is a special token left out" if totals.excluded else "the dataset's samples are empty"
        raise ValidationError(f"No tokens to extract: {why}", details={"field": "dataset_id"})
    return {
        "activation_id": params.activation_id,
        "model_id": params.model_id,
        "dataset_id": params.dataset_id,
        "tokenizer": params.tokenizer,
        "precision": params.precision,
        "dtype": "float16",
        "context_length": params.context_length,
        "samples": totals.samples,
        "tokens": totals.tokens,
        "exclude_special_tokens": params.exclude_special_tokens,
        "excluded_token_ids": list(excluded or []),
        "excluded_positions": totals.excluded,
        "d_model": params.d_model,
        "shards": shards,
        "token_columns": ["sample_index", "position", "token_id"],
        "hooks": [
            {
                **msgspec.to_builtins(p),
                "shape": [totals.tokens, params.d_model],
                **totals.hook_stats(p.name, params.d_model),
            }
            for p in params.hook_points
        ],
        # Throughput: every token run through the model, stored or left out.
        "tokens_per_second": round((totals.tokens + totals.excluded) / elapsed, 1) if elapsed else None,
        "peak_rss_mb": round(peak_rss / 2**20, 1),
    }


def run(ctx: JobContext, params: ExtractParams) -> dict[str, Any]:
    from appliance.contracts.special_tokens import excluded_ids

    final = ctx.layout.activations(params.activation_id)
    partial = partial_dir(ctx.layout, params.activation_id)
    names = [p.name for p in params.hook_points]
    samples = samples_to_extract(params, ctx.layout)
    excluded = excluded_ids(params.exclude_special_tokens, params.special_token_ids, params.tokenizer, ctx.layout.root)
    # The setting's memory is shared by the writer's sets of buffers.
    shard_tokens = max(
        1024, ctx.settings.activation_shard_mb * 2**20 // (ShardWriter.SETS * len(names) * params.d_model * 2)
    )
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    # The batches are read and tokenized by a thread that runs ahead: while the model loads, then
    # during each forward pass (Arrow and the Rust tokenizer release the GIL).
    with (
        ctx.memory.admit(ctx, memory_estimate(params, shard_tokens)),
        PeakRss() as peak,
        Prefetched(token_batches(params, ctx.layout)) as batches,
    ):
        ctx.progress(0.01, f"Loading the model ({params.precision})", force=True)
        model = load(params.model_path, params.precision)
        capture = Capture(model, params.hook_points)
        writer = ShardWriter(partial, names, shard_tokens, params.d_model)
        totals = Totals(names, capture.device)
        began = time.monotonic()
        try:
            with Interruptible(model, ctx.check):  # a cancel is noticed inside a batch's forward pass
                extract_batches(ctx, batches, capture, writer, totals, samples, excluded)
        finally:
            capture.close()
            writer.close()
        elapsed = time.monotonic() - began
    manifest = manifest_of(params, totals, writer.shards, elapsed, peak.peak, excluded)
    (partial / MANIFEST).write_bytes(msgspec.json.encode(manifest))
    shutil.rmtree(final, ignore_errors=True)
    os.replace(partial, final)
    size = sum(f.stat().st_size for f in final.iterdir())
    # The row and the event the UI watches commit together: a client that sees the event reads "ready".
    ctx.db.write(
        activation_sets.change(
            params.activation_id, status="ready", manifest=msgspec.json.encode(manifest).decode(), size_bytes=size
        ),
        insert_event(
            ctx.topic,
            "activations.updated",
            ActivationsUpdated(activation_id=params.activation_id, status="ready"),
            ctx.job_id,
            True,
            time.time(),
        ),
    )
    return {
        "activation_id": params.activation_id,
        "tokens": totals.tokens,
        "samples": totals.samples,
        "excluded_token_ids": excluded,
        "excluded_positions": totals.excluded,
        "tokens_per_second": manifest["tokens_per_second"],
        "peak_rss_mb": manifest["peak_rss_mb"],
    }


def cleanup(job: Job, params: ExtractParams, layout: DataLayout, db: Database) -> None:
    """No partial set is left: the files go; the row stays with the reason (set when the job ended,
    by appliance.jobs.finalize)."""
    shutil.rmtree(partial_dir(layout, params.activation_id), ignore_errors=True)
