"""How a token is shown as text: never as a replacement character.

A byte-level BPE tokenizer (GPT-2's and most since) and a SentencePiece one with byte fallback have tokens
that hold only part of a UTF-8 character: decoded alone they give U+FFFD, which tells a reader nothing and
makes every such token look the same. Shown alone (a top token, a logit lens row, a label, a probability
shift), such a token's bytes are written as escapes, as Neuronpedia writes them (``"\\xe2\\x80"``; the bytes
of it that are whole characters stay characters). Inside a context, a run of them is merged with its
neighbours when together they decode: the first token of the run shows the characters and the others are
marked as joined to it (``Context.joined``), so a context's per-token arrays keep their positions.

Torch-free and tokenizer-only (the ``tokenizers`` library): the API renders contexts with it and the
worker renders what an extraction stores.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from tokenizers import Tokenizer

REPLACEMENT = "\ufffd"
# Tokens a run may span: a character is at most 4 bytes, and a byte-level token holds at least one.
MAX_RUN = 8
_FALLBACK = re.compile(r"<0x([0-9A-Fa-f]{2})>")  # SentencePiece's byte-fallback pieces
_ESCAPED = re.compile(r"\\\\(x[0-9a-f]{2})")


def _byte_alphabet() -> dict[str, int]:
    """GPT-2's byte-level alphabet, character -> byte: printable bytes stand for themselves, the others
    for the characters from U+0100 on, in byte order (``bytes_to_unicode`` inverted)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    others = [b for b in range(256) if b not in printable]
    return {chr(b): b for b in printable} | {chr(256 + n): b for n, b in enumerate(others)}


BYTE_ALPHABET = _byte_alphabet()


def token_bytes(tokenizer: "Tokenizer", token_id: int) -> bytes | None:
    """The bytes a token stands for, where its piece says: a byte-fallback piece (``<0xE2>``) or a
    byte-level one; None for a piece of another kind."""
    piece = tokenizer.id_to_token(int(token_id))
    if piece is None:
        return None
    fallback = _FALLBACK.fullmatch(piece)
    if fallback:
        return bytes([int(fallback.group(1), 16)])
    if piece and all(c in BYTE_ALPHABET for c in piece):
        return bytes(BYTE_ALPHABET[c] for c in piece)
    return None


def escaped(data: bytes) -> str:
    """Bytes as text: what is valid UTF-8 as characters, every other byte as ``\\xNN``; a replacement
    character that was really in the text is escaped too, so none is ever shown."""
    text = data.decode("utf-8", errors="backslashreplace")
    return text.replace(REPLACEMENT, "\\xef\\xbf\\xbd")


def token_text(tokenizer: "Tokenizer", token_id: int) -> str:
    """One token as text, alone: its decoded text, or its bytes as escapes where that text would hold
    a replacement character (a partial character)."""
    text = tokenizer.decode([int(token_id)], skip_special_tokens=False)
    if REPLACEMENT not in text:
        return text
    data = token_bytes(tokenizer, token_id)
    if data is None:  # a tokenizer whose pieces do not say their bytes: name the token instead
        return text.replace(REPLACEMENT, f"<{token_id}>")
    return escaped(data)


class Context(NamedTuple):
    """A context's tokens as text, one per token id. ``joined[i]``: token i is part of the previous
    token's text (a run of partial characters merged where together they decode); its own text is ""."""

    texts: list[str]
    joined: list[bool]


def context_text(tokenizer: "Tokenizer", token_ids: list[int]) -> Context:
    """The tokens of a context as text: each alone (``token_text``), except runs of partial characters
    that decode together, which show once, on their first token."""
    alone = [tokenizer.decode([int(t)], skip_special_tokens=False) for t in token_ids]
    texts: list[str] = []
    joined: list[bool] = []
    i = 0
    while i < len(token_ids):
        if REPLACEMENT not in alone[i]:
            texts.append(alone[i])
            joined.append(False)
            i += 1
            continue
        run = _run(tokenizer, token_ids, alone, i)
        if run is None:
            texts.append(token_text(tokenizer, token_ids[i]))
            joined.append(False)
            i += 1
            continue
        end, text = run
        texts += [text, *([""] * (end - i - 1))]
        joined += [False, *([True] * (end - i - 1))]
        i = end
    return Context(texts, joined)


def _run(tokenizer: "Tokenizer", token_ids: list[int], alone: list[str], start: int) -> tuple[int, str] | None:
    """(end, text) of the shortest run of tokens from ``start`` that decodes without a replacement
    character, when the tokens after the first are partial characters too; None when there is none."""
    for end in range(start + 2, min(len(token_ids), start + MAX_RUN) + 1):
        if REPLACEMENT not in alone[end - 1]:
            return None  # a whole token cannot complete the character
        text = tokenizer.decode([int(t) for t in token_ids[start:end]], skip_special_tokens=False)
        if REPLACEMENT not in text:
            return end, text
    return None


def quoted(text: str) -> str:
    """A token quoted for a label, as Python's repr quotes it, but with a byte escape shown once
    (repr would double its backslash)."""
    return _ESCAPED.sub(r"\\\1", repr(text))
