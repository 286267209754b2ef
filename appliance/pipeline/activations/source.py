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
  known before any forward pass.

Special tokens' positions (``StreamSpec.exclude_special_tokens``) are neither trained on nor held
out, so explained variance is measured on the positions the SAE trained on. A stored set has none of
them when its extraction left them out (the default), and its training inherits that choice.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec

from appliance.contracts.params.training import StreamSpec
from appliance.data.layout import DataLayout

HELD_OUT = 0.05
EVAL_TOKENS = 8192


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

    def batches(self, batch_size: int, seed: int, start_step: int) -> Iterator[tuple[Any, Any | None]]:
        """Training batches, forever, epoch after epoch, from step ``start_step`` on."""
        import torch

        step = 0
        for epoch in range(10**9):
            generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
            offset = 0
            for shard_pos in torch.randperm(len(self.shards), generator=generator).tolist():
                index, tokens = self.shards[shard_pos]
                start = sum(n for _, n in self.shards[:shard_pos])
                usable = max(0, min(tokens, self.train_tokens - start))
                order = torch.randperm(usable, generator=generator)
                count = usable // batch_size
                offset += usable
                if step + count <= start_step:  # fast-forward without loading the shard
                    step += count
                    continue
                x, y = self._rows(index)
                for b in range(count):
                    if step >= start_step:
                        rows = order[b * batch_size : (b + 1) * batch_size]
                        yield x[rows].float(), (y[rows].float() if y is not None else None)
                    step += 1
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

    def __init__(self, spec: StreamSpec, layout: DataLayout, buffer_tokens: int):
        from appliance.contracts.special_tokens import excluded_ids

        self.spec, self.layout = spec, layout
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
        self._capture: Any = None
        self._cached: tuple[int, tuple[Any, Any | None]] | None = None

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
    def _rows(self, index: int) -> tuple[Any, Any | None]:
        import torch

        from appliance.pipeline.activations.extract import Capture
        from appliance.pipeline.models.loading import load

        if self._cached is not None and self._cached[0] == index:
            return self._cached[1]
        if self._capture is None:
            points = [self.spec.hook_point] + ([self.spec.target_point] if self.spec.target_point else [])
            self._capture = Capture(load(self.spec.model_path, self.spec.precision), points)
        first, end = self.blocks[index]
        ids = [x for x in self._ids(first, end) if x]
        drop = torch.tensor(self.excluded, dtype=torch.long)
        xs, ys = [], []
        for start in range(0, len(ids), self.spec.forward_batch):
            captured, padded, keep = self._capture(ids[start : start + self.spec.forward_batch])
            # The captured rows are the real tokens in order; the excluded tokens' rows go.
            chosen = (~torch.isin(padded, drop))[keep].to(captured[self.hook].device) if self.excluded else None
            xs.append((captured[self.hook] if chosen is None else captured[self.hook][chosen]).to(torch.float16).cpu())
            if self.target:
                y = captured[self.target] if chosen is None else captured[self.target][chosen]
                ys.append(y.to(torch.float16).cpu())
        self._cached = None  # the old block goes before the new one is kept
        rows = (torch.cat(xs), torch.cat(ys) if ys else None)
        self._cached = (index, rows)
        return rows

    def close(self) -> None:
        if self._capture is not None:
            self._capture.close()
            self._capture = None
        self._cached = None
