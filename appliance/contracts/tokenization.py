"""Tokenizers and tokenization settings, shared by the API (preview) and the worker (dataset jobs).

Only the Rust ``tokenizers`` library is used, never transformers: it is what a model's fast tokenizer
runs on anyway, it loads a ``tokenizer.json`` in milliseconds, and it keeps torch out of the API.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import msgspec

from appliance.data.layout import DataLayout
from appliance.demo_kit import TOKENIZER_FILE
from appliance.errors import NotFound, ValidationError

if TYPE_CHECKING:
    from tokenizers import Encoding, Tokenizer

DEMO_TOKENIZER = "demo"
Padding = Literal["max_length", "longest", "do_not_pad"]
Truncation = Literal["longest_first", "only_first", "only_second", "do_not_truncate"]


class TokenizeSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """How a dataset is tokenized (the Tokenization tab's form); stored with each tokenized dataset
    and reused by whatever reads its token ids, so they are read as they were made."""

    tokenizer: Annotated[str, msgspec.Meta(min_length=1, max_length=100)] = DEMO_TOKENIZER
    max_length: Annotated[int, msgspec.Meta(ge=1, le=4096)] = 512
    padding: Padding = "max_length"
    truncation: Truncation = "longest_first"
    add_special_tokens: bool = True
    return_attention_mask: bool = True

    def check(self) -> None:
        if self.truncation == "only_second":
            raise ValidationError(
                "Truncation 'only_second' applies to pairs of texts; a dataset sample is one text: "
                "use 'longest_first' or 'only_first'",
                details={"field": "truncation"},
            )


def tokenizer_path(tokenizer_id: str, data_dir: Path) -> Path:
    """Where a tokenizer's ``tokenizer.json`` lives: the demo kit's, or a downloaded model's."""
    if tokenizer_id == DEMO_TOKENIZER:
        return TOKENIZER_FILE
    if tokenizer_id.startswith("m_") and "/" not in tokenizer_id and ".." not in tokenizer_id:
        path = DataLayout(data_dir).model(tokenizer_id) / "tokenizer.json"
        if path.is_file():
            return path
    raise NotFound(
        f"No tokenizer {tokenizer_id!r}: use 'demo' or the id of a ready model", details={"field": "tokenizer"}
    )


_cache: OrderedDict[tuple[Any, ...], "Tokenizer"] = OrderedDict()
_lock = threading.Lock()
CACHED = 8  # tokenizers (plain or configured) kept: a few models at a time on a small device


def load_tokenizer(tokenizer_id: str, data_dir: Path, settings: TokenizeSettings | None = None) -> "Tokenizer":
    """The tokenizer, as loaded or configured by ``settings`` (truncation, padding); cached, since a
    configured copy costs a serialisation round trip (~13 ms for the demo tokenizer) and previews
    ask for the same one again and again. Shared: callers must not change it."""
    from tokenizers import Tokenizer

    path = tokenizer_path(tokenizer_id, data_dir)
    base_key = (str(path), path.stat().st_mtime)
    key = base_key + ((settings.max_length, settings.padding, settings.truncation) if settings else ())
    with _lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
    base = _cache.get(base_key) or Tokenizer.from_file(str(path))
    made = configure(base, settings) if settings else base
    with _lock:
        _cache[base_key] = base
        _cache[key] = made
        while len(_cache) > CACHED:
            _cache.popitem(last=False)
    return made


def truncated(encodings: list["Encoding"], texts: list[str], settings: TokenizeSettings, data_dir: Path) -> list[bool]:
    """Which encodings lost tokens to truncation.

    ``Encoding.overflowing`` says so, except in tokenizers 0.23.1 and 0.23.2, whose truncation early
    exit leaves it empty (huggingface/tokenizers#2091). The encodings that fill ``max_length`` with no
    overflow are therefore encoded again untruncated, in one batch: rare where the flag works, and only
    the samples at the limit where it does not.
    """
    if settings.truncation == "do_not_truncate":
        return [False] * len(encodings)
    flags = [bool(e.overflowing) for e in encodings]
    unsure = [i for i, e in enumerate(encodings) if not e.overflowing and sum(e.attention_mask) >= settings.max_length]
    if unsure:
        plain = load_tokenizer(
            settings.tokenizer,
            data_dir,
            TokenizeSettings(
                tokenizer=settings.tokenizer,
                max_length=settings.max_length,
                truncation="do_not_truncate",
                padding="do_not_pad",
            ),
        )
        full = plain.encode_batch([texts[i] for i in unsure], add_special_tokens=settings.add_special_tokens)
        for i, encoding in zip(unsure, full):
            flags[i] = len(encoding.ids) > settings.max_length
    return flags


def pad_token(tokenizer: "Tokenizer") -> tuple[int, str]:
    """The padding token: the tokenizer's own, else its end-of-text token (what GPT-2 users do)."""
    vocab = tokenizer.get_vocab()
    for token in ("<pad>", "[PAD]", "<|pad|>", "<|endoftext|>", "</s>", "<eos>", "<|end_of_text|>"):
        if token in vocab:
            return vocab[token], token
    return 0, tokenizer.id_to_token(0) or ""


def configure(tokenizer: "Tokenizer", settings: TokenizeSettings) -> "Tokenizer":
    """A copy of ``tokenizer`` that truncates and pads as ``settings`` say (copies: the cached one is shared)."""
    from tokenizers import Tokenizer

    configured = Tokenizer.from_str(tokenizer.to_str())
    configured.no_truncation()
    configured.no_padding()
    if settings.truncation != "do_not_truncate":
        configured.enable_truncation(settings.max_length)
    if settings.padding != "do_not_pad":
        pad_id, pad = pad_token(tokenizer)
        configured.enable_padding(
            pad_id=pad_id, pad_token=pad, length=settings.max_length if settings.padding == "max_length" else None
        )
    return configured


def pieces(encoding: "Encoding", text: str, tokenizer: "Tokenizer") -> list[str]:
    """The text each token stands for, for display: the slice of the input it covers, or the special
    token's name. Byte-level tokens that split a character share it; the first shows it."""
    out: list[str] = []
    covered = 0  # text before this is shown by earlier chips
    for token_id, (start, end), special in zip(encoding.ids, encoding.offsets, encoding.special_tokens_mask):
        if special or start == end:
            out.append(tokenizer.id_to_token(token_id) or "")
        else:
            out.append(text[max(start, covered) : end])
            covered = max(covered, end)
    return out
