"""What an export's metadata says about where its SAE comes from: SAELens' keys, the appliance's own
ids as ``mistudio_*``, and whether the tokenization put the start-of-text token first (SAELens'
``prepend_bos``), read from the token ids the training read rather than assumed."""

from __future__ import annotations

from typing import Any

import msgspec

from appliance.contracts.params.training import ExportMetadata
from appliance.contracts.special_tokens import special_ids
from appliance.contracts.tokenization import load_tokenizer
from appliance.data.layout import DataLayout


def prepend_bos(layout: DataLayout, dataset_id: str, tokenizer_id: str) -> bool:
    """Whether the samples start with a special token: the stored tokenization's first samples when the
    dataset has one with this tokenizer (extraction and streaming read it), else the tokenizer's own
    encoding with its special tokens, as they tokenize then."""
    tokenizer = load_tokenizer(tokenizer_id, layout.root)
    stored = layout.tokenized_arrow(dataset_id, tokenizer_id)
    if stored.is_file():
        from datasets import Dataset

        data = Dataset.from_file(str(stored))
        firsts = [row[0] for row in data[: min(len(data), 16)]["input_ids"] if len(row)]
        return bool(firsts) and firsts[0] in set(special_ids(tokenizer))
    encoding = tokenizer.encode("a", add_special_tokens=True)
    return bool(encoding.special_tokens_mask) and encoding.special_tokens_mask[0] == 1


def saelens_metadata(layout: DataLayout, meta: ExportMetadata) -> dict[str, Any]:
    """The export's metadata from the training's ``ExportMetadata``; jobs written before the tokenizer
    was recorded get no ``prepend_bos`` rather than a guess."""
    out = msgspec.to_builtins(meta)
    tokenizer = out.pop("tokenizer")
    for key in ("model_id", "dataset_id", "training_id"):
        out[f"mistudio_{key}"] = out.pop(key) or None
    out["prepend_bos"] = prepend_bos(layout, meta.dataset_id, tokenizer) if tokenizer else None
    return {k: v for k, v in out.items() if v is not None}
