"""Where a training's activations come from, batch by batch.

Both sources cut the tokens into blocks and serve batches in a deterministic order: the blocks in
a permutation drawn per epoch from the seed, the tokens of a block in a permutation of their own.
A run resumed from a checkpoint therefore sees exactly the batches the uninterrupted run would
have seen, and fast-forwards over earlier blocks by counting, without reading them. The last
``HELD_OUT`` share of tokens is never trained on: explained variance is measured there.

- ``ActivationSource``: a stored activation set; a block is one of its fp16 shards.
- ``StreamedSource``: the model runs over the tokenized dataset while training; a block is the
  shuffle buffer (as many samples' tokens as the memory manager allows), filled by forward passes
  when the loop reaches it. Token counts come from the tokenization, so the plan of blocks is
  known before any forward pass. Over an epoch each sample runs through the model once: a block's
  samples past the held-out boundary are never filled (no batch reads them), the held-out samples
  run for ``held_out`` alone, and the one sample split by the boundary once, for both. Each fill
  reports its progress (``Fill``) to ``on_fill``.

Special tokens' positions (``StreamSpec.exclude_special_tokens``) are neither trained on nor held
out, so explained variance is measured on the positions the SAE trained on. A stored set has none of
them when its extraction left them out (the default), and its training inherits that choice.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import msgspec

from appliance.contracts.params.training import StreamSpec
from appliance.data.layout import DataLayout

HELD_OUT = 0.05
EVAL_TOKENS = 8192
SCALE_BATCHES = 20  # the first training batches, at most, that the activations' scale is measured on
Rows = tuple[Any, Any | None]  # (inputs, targets or None), one row per token


@dataclass(frozen=True)
class Fill:
    """A run of the model over samples, as it goes: a shuffle buffer's or the held-out rows'."""

    kind: Literal["buffer", "held_out"]
    done: int  # tokens run through the model in this fill so far
    total: int
    seconds: float  # since the fill began (the model's load included)
    forwarded: int  # tokens run through the model since the source opened

    @property
    def rate(self) -> float | None:
        """Tokens/s so far; None before the first forward batch."""
        return self.done / self.seconds if self.done and self.seconds > 0 else None

    @property
    def eta_s(self) -> float | None:
        rate = self.rate
        return (self.total - self.done) / rate if rate else None


class ActivationSource:
    """The activation set's shards for one hook (and the target hook for transcoders)."""

    def __init__(self, folder: Path, hook: str, target: str | None):
        self.folder, self.hook, self.target = folder, hook, target
        self.manifest = msgspec.json.decode((folder / "manifest.json").read_bytes())
        self.shards = [(s["index"], s["tokens"]) for s in self.manifest["shards"]]
        total = sum(n for _, n in self.shards)
        self.train_tokens = total - max(1, int(total * HELD_OUT))

    def _load(self, name: str, index: int) -> Any:
        from safetensors.torch import load_file

        return load_file(str(self.folder / f"{name}_{index:04d}.safetensors"))["activations"]

    def _rows(self, index: int) -> tuple[Any, Any | None]:
        return self._load(self.hook, index), self._load(self.target, index) if self.target else None

    def _usable(self, shard_pos: int) -> int:
        """The block's rows that are trained on: those before the held-out share, from its start."""
        start = sum(n for _, n in self.shards[:shard_pos])
        return max(0, min(self.shards[shard_pos][1], self.train_tokens - start))

    @staticmethod
    def _generator(seed: int, epoch: int) -> Any:
        import torch

        return torch.Generator().manual_seed(seed * 1_000_003 + epoch)

    def scale_batches(self, batch_size: int, seed: int) -> int:
        """How many of the first training batches the activations' scale is measured on."""
        return SCALE_BATCHES

    def batches(self, batch_size: int, seed: int, start_step: int) -> Iterator[tuple[Any, Any | None]]:
        """Training batches, forever, epoch after epoch, from step ``start_step`` on."""
        import torch

        step = 0
        for epoch in range(10**9):
            generator = self._generator(seed, epoch)
            offset = 0
            for shard_pos in torch.randperm(len(self.shards), generator=generator).tolist():
                index = self.shards[shard_pos][0]
                usable = self._usable(shard_pos)
                order = torch.randperm(usable, generator=generator)
                count = usable // batch_size
                offset += usable
                # Fast-forward without loading the block; one without a whole batch is never loaded.
                if count == 0 or step + count <= start_step:
                    step += count
                    continue
                x, y = self._rows(index)
                for b in range(count):
                    if step >= start_step:
                        rows = order[b * batch_size : (b + 1) * batch_size]
                        yield x[rows].float(), (y[rows].float() if y is not None else None)
                    step += 1
                x = y = None  # the block goes before the next one is read
            if offset < batch_size:
                raise ValueError("The activation set has fewer training tokens than one batch")

    def held_out(self, limit: int = EVAL_TOKENS) -> tuple[Any, Any | None]:
        import torch

        xs, ys, have = [], [], 0
        position = 0
        for index, tokens in self.shards:
            begin = max(0, self.train_tokens - position)
            if begin < tokens:
                x, y = self._rows(index)
                xs.append(x[begin:].float())
                if y is not None:
                    ys.append(y[begin:].float())
                have += tokens - begin
            position += tokens
            if have >= limit:
                break
        x = torch.cat(xs)[:limit]
        return x, (torch.cat(ys)[:limit] if ys else None)

    def close(self) -> None:
        """Nothing held between batches (streamed sources hold a model)."""


class StreamedSource(ActivationSource):
    """Activations computed while training: blocks of consecutive samples (a shuffle buffer's worth
    of tokens each) run through the model when the loop reaches them; the last block is kept."""

    def __init__(
        self, spec: StreamSpec, layout: DataLayout, buffer_tokens: int, check: Callable[[], None] | None = None
    ):
        from appliance.contracts.special_tokens import excluded_ids

        self.spec, self.layout = spec, layout
        # The job's control check, also called before every block of the model (models.interrupt): a
        # block's forward passes take minutes on a large model, and a pause must not wait for them.
        self.check = check
        self._interrupt: Any = None
        self.hook = spec.hook_point.name
        self.target = spec.target_point.name if spec.target_point else None
        self.excluded = excluded_ids(spec.exclude_special_tokens, spec.special_token_ids, spec.tokenizer, layout.root)
        lengths = self._lengths()
        self.blocks: list[tuple[int, int]] = []  # [first, end) sample ranges
        self.shards = []
        first = filled = 0
        for index, n in enumerate(lengths):
            filled += n
            if filled >= buffer_tokens or index == len(lengths) - 1:
                if filled:
                    self.shards.append((len(self.blocks), filled))
                    self.blocks.append((first, index + 1))
                first, filled = index + 1, 0
        total = sum(n for _, n in self.shards)
        if total < 2:
            raise ValueError("The dataset has no tokens to train on")
        self.train_tokens = total - max(1, int(total * HELD_OUT))
        self.lengths = lengths
        # The sample holding the first held-out row, and how many of its rows come before it.
        self._split, self._split_cut = _locate(lengths, self.train_tokens)
        self._boundary: Rows | None = None  # that sample's rows, run once for both sides
        self.on_fill: Callable[[Fill], None] | None = None
        self.tokens_forwarded = 0
        self._capture: Any = None
        self._cached: tuple[int, Rows] | None = None

    def scale_batches(self, batch_size: int, seed: int) -> int:
        """Those of the first block the training reads, and no more: the training starts on that block
        anyway, so the scale costs no forward pass of its own (a block of a large model takes minutes)."""
        import torch

        order = torch.randperm(len(self.shards), generator=self._generator(seed, 0)).tolist()
        first = next((n for n in (self._usable(pos) // batch_size for pos in order) if n), 1)
        return min(SCALE_BATCHES, first)

    # -- tokens -----------------------------------------------------------------------------------
    def _stored(self) -> Path:
        return self.layout.tokenized_arrow(self.spec.dataset_id, self.spec.tokenizer)

    def _count(self, available: int) -> int:
        return min(available, self.spec.max_samples or available)

    def _lengths(self) -> list[int]:
        """Tokens per sample that the run reads (cut to the context length, less excluded ones): from
        the stored tokenization's lengths when nothing is excluded, else from its token ids or by
        tokenizing the texts (the Rust tokenizer; no model needed)."""
        from datasets import Dataset

        cut = self.spec.context_length
        stored = self._stored().is_file()
        if stored and not self.excluded:
            data = Dataset.from_file(str(self._stored()))
            return [min(n, cut) for n in data.select_columns(["length"])[: self._count(len(data))]["length"]]
        count = self._count(len(Dataset.from_file(str(self._stored())))) if stored else len(self._texts())
        lengths: list[int] = []
        for start in range(0, count, 1024):
            lengths.extend(self._kept(self._ids(start, min(count, start + 1024))))
        return lengths

    def _kept(self, samples: list[list[int]]) -> list[int]:
        """Each sample's tokens that are not excluded."""
        import numpy as np

        lengths = np.array([len(ids) for ids in samples], dtype=np.int64)
        if not self.excluded:
            return [int(n) for n in lengths]
        flat = np.fromiter((t for ids in samples for t in ids), dtype=np.int64, count=int(lengths.sum()))
        row_of = np.repeat(np.arange(len(samples)), lengths)
        dropped = np.bincount(row_of[np.isin(flat, self.excluded)], minlength=len(samples))
        return [int(n) for n in lengths - dropped]

    def _texts(self) -> Any:
        from datasets import load_from_disk

        texts = load_from_disk(str(self.layout.dataset_arrow(self.spec.dataset_id)))
        return texts.select(range(self._count(len(texts))))

    def _ids(self, first: int, end: int) -> list[list[int]]:
        from datasets import Dataset

        from appliance.contracts.tokenization import TokenizeSettings, load_tokenizer

        cut = self.spec.context_length
        if self._stored().is_file():
            rows = Dataset.from_file(str(self._stored()))[first:end]
            return [ids[: min(n, cut)] for ids, n in zip(rows["input_ids"], rows["length"])]
        tokenizer = load_tokenizer(
            self.spec.tokenizer,
            self.layout.root,
            TokenizeSettings(tokenizer=self.spec.tokenizer, max_length=cut, padding="do_not_pad"),
        )
        texts = self._texts()[first:end]["text"]
        return [e.ids for e in tokenizer.encode_batch(["" if t is None else t for t in texts])]

    # -- activations ------------------------------------------------------------------------------
    def _model(self) -> Any:
        """The capture over the model, which loads at the first forward pass."""
        from appliance.pipeline.activations.extract import Capture
        from appliance.pipeline.models.interrupt import Interruptible
        from appliance.pipeline.models.loading import load

        if self._capture is None:
            points = [self.spec.hook_point] + ([self.spec.target_point] if self.spec.target_point else [])
            model = load(self.spec.model_path, self.spec.precision)
            self._capture = Capture(model, points)
            self._interrupt = Interruptible(model, self.check)
        return self._capture

    def _batches(self, first: int, end: int) -> list[list[list[int]]]:
        """Samples ``first``..``end`` in forward batches (empty samples have no rows)."""
        if first >= end:
            return []
        ids = [x for x in self._ids(first, end) if x]
        return [ids[start : start + self.spec.forward_batch] for start in range(0, len(ids), self.spec.forward_batch)]

    def _split_batch(self) -> list[list[int]]:
        """The boundary sample alone: its rows are the same whichever side asks for them first."""
        return self._ids(self._split, self._split + 1)

    def _forward(self, batches: list[list[list[int]]], kind: Literal["buffer", "held_out"]) -> list[Rows]:
        """Each forward batch's rows (fp16, on the CPU; the excluded tokens' rows gone), the fill's
        progress reported before the model loads and after every batch."""
        import torch

        total = sum(len(ids) for batch in batches for ids in batch)
        done, began = 0, time.monotonic()
        self._report(Fill(kind, 0, total, 0.0, self.tokens_forwarded))
        capture = self._model()
        drop = torch.tensor(self.excluded, dtype=torch.long)
        parts: list[Rows] = []
        for batch in batches:
            if self.check is not None:
                self.check()
            captured, padded, keep = capture(batch)
            # The captured rows are the real tokens in order; the excluded tokens' rows go.
            chosen = (~torch.isin(padded, drop))[keep].to(captured[self.hook].device) if self.excluded else None
            x = (captured[self.hook] if chosen is None else captured[self.hook][chosen]).to(torch.float16).cpu()
            y = None
            if self.target:
                y = captured[self.target] if chosen is None else captured[self.target][chosen]
                y = y.to(torch.float16).cpu()
            parts.append((x, y))
            tokens = sum(len(ids) for ids in batch)
            done += tokens
            self.tokens_forwarded += tokens
            self._report(Fill(kind, done, total, time.monotonic() - began, self.tokens_forwarded))
        return parts

    def _report(self, fill: Fill) -> None:
        if self.on_fill is not None:
            self.on_fill(fill)

    def _rows(self, index: int) -> Rows:
        """A block's training rows: its samples up to the held-out boundary (``batches`` reads no row
        after it), the boundary sample's first rows from the run it shares with ``held_out``."""
        if self._cached is not None and self._cached[0] == index:
            return self._cached[1]
        self._cached = None  # the old block goes before the new one is filled
        first, end = self.blocks[index]
        straddles = first <= self._split < end and self._split_cut > 0
        fresh = straddles and self._boundary is None
        parts = self._forward(
            self._batches(first, min(end, self._split)) + ([self._split_batch()] if fresh else []), "buffer"
        )
        if fresh:
            self._boundary = parts.pop()
        if straddles:
            assert self._boundary is not None
            parts.append(_sliced(self._boundary, 0, self._split_cut))
        if not parts:
            raise ValueError(f"Block {index} has no training rows")  # batches() never fills such a block
        rows = _joined(parts)
        self._cached = (index, rows)
        return rows

    def held_out(self, limit: int = EVAL_TOKENS) -> Rows:
        """The first ``limit`` rows from ``train_tokens`` on: the boundary sample's last rows and the
        samples after it, run through the model for this alone."""
        end, have = self._split + 1, self.lengths[self._split] - self._split_cut
        while have < limit and end < len(self.lengths):
            have += self.lengths[end]
            end += 1
        fresh = self._boundary is None
        parts = self._forward(
            ([self._split_batch()] if fresh else []) + self._batches(self._split + 1, end), "held_out"
        )
        if fresh:
            self._boundary = parts.pop(0)
        assert self._boundary is not None
        x, y = _joined([_sliced(self._boundary, self._split_cut, None), *parts])
        return x[:limit].float(), (y[:limit].float() if y is not None else None)

    def close(self) -> None:
        if self._interrupt is not None:
            self._interrupt.remove()
            self._interrupt = None
        if self._capture is not None:
            self._capture.close()
            self._capture = None
        self._cached = self._boundary = None


def _locate(lengths: list[int], row: int) -> tuple[int, int]:
    """The sample holding row ``row`` of the samples' rows laid end to end, and its rows before it."""
    position = 0
    for index, n in enumerate(lengths):
        if position + n > row:
            return index, row - position
        position += n
    raise ValueError(f"Row {row:,} is past the samples' {position:,} rows")


def _sliced(rows: Rows, start: int, end: int | None) -> Rows:
    x, y = rows
    return x[start:end], (y[start:end] if y is not None else None)


def _joined(parts: list[Rows]) -> Rows:
    import torch

    ys = [y for _, y in parts if y is not None]
    return torch.cat([x for x, _ in parts]), (torch.cat(ys) if ys else None)
