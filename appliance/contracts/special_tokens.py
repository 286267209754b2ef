"""Which token ids are left out of activations, feature statistics and the reconstruction's evaluation.

A special token (BOS/EOS/PAD/UNK...) sits at the same place in every sample and its activation is
nearly the same everywhere: an SAE that sees it spends latents on it, and a feature pass counts it as
the top example of features that say nothing about the text. SAELens (``exclude_special_tokens``),
SAEDashboard and sparsify users leave those positions out; so does the appliance, by default.

The ids come from the tokenizer (its added tokens marked special), or from a list the user gives, or
none when exclusion is off. Torch-free: the API validates the choice, the worker resolves it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import msgspec

from appliance.errors import ValidationError

if TYPE_CHECKING:
    from tokenizers import Tokenizer

# What a request may name instead of the tokenizer's special tokens (checked against the vocabulary
# by ``check_given`` where the API knows it).
GivenIds = Annotated[list[Annotated[int, msgspec.Meta(ge=0)]], msgspec.Meta(max_length=10_000)]


def special_ids(tokenizer: "Tokenizer") -> list[int]:
    """The tokenizer's special tokens: its added tokens marked special, in id order."""
    return sorted(i for i, token in tokenizer.get_added_tokens_decoder().items() if token.special)


def excluded_ids(exclude: bool, given: list[int] | None, tokenizer_id: str, data_dir: Path) -> list[int]:
    """The ids a job leaves out: none when ``exclude`` is off, else ``given`` when there is a list,
    else the tokenizer's special tokens."""
    from appliance.contracts.tokenization import load_tokenizer

    if not exclude:
        return []
    if given is not None:
        return sorted(set(given))
    return special_ids(load_tokenizer(tokenizer_id, data_dir))


def check_given(given: list[int] | None, vocab_size: int | None) -> None:
    """A request's own list of ids: each must be a token of the model's vocabulary (when it is known)."""
    if given is None or not vocab_size:
        return
    outside = sorted({i for i in given if not 0 <= i < vocab_size})
    if outside:
        raise ValidationError(
            f"special_token_ids must be token ids below the vocabulary's size {vocab_size}; not {outside[0]}",
            details={"field": "special_token_ids", "vocab_size": vocab_size},
        )
