"""Resource identifiers: a type prefix plus url-safe random characters (see docs/ARCHITECTURE.md)."""

from __future__ import annotations

import re
import secrets
import string

_ALPHABET = string.ascii_lowercase + string.digits
PREFIXES = ("ds", "m", "act", "tr", "ckpt", "job", "tt", "et", "sp")
_ID_RE = re.compile(r"^(?P<prefix>[a-z]+)_[A-Za-z0-9_-]{8,64}$")


def new_id(prefix: str, length: int = 10) -> str:
    if prefix not in PREFIXES:
        raise ValueError(f"unknown id prefix {prefix!r}")
    return f"{prefix}_" + "".join(secrets.choice(_ALPHABET) for _ in range(length))


def is_valid_id(value: str, prefix: str) -> bool:
    match = _ID_RE.match(value)
    return match is not None and match.group("prefix") == prefix
