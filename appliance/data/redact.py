"""Scrubbing of stored secrets from every text the worker lets out: job errors, results and messages,
events, resource rows and log records.

Upstreams quote what they were sent ("Incorrect API key provided: Bearer sk-..."), and that text
travels into a job's error, its events and the log. Rather than trusting each handler to clean its
exceptions, the few places where text leaves the worker pass it through the installed scrubber, which
knows every secret in ``<data dir>/secrets`` (re-read when that folder changes), every secret this
process has read (a Hub token is deleted right after use, before the job's error is recorded) and
the API token. Only the worker installs one; elsewhere ``scrub`` returns its input.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path
from typing import Any
from urllib.parse import quote

import msgspec

REDACTED = "[redacted]"
# Shorter values are not secrets worth the damage of replacing them in every text.
MIN_SECRET_LEN = 6
# A secret cut short (an upstream body truncated to N bytes) still leaks its first characters: any run
# of at least this many of them is scrubbed too.
PREFIX_LEN = 8


def _forms(value: str) -> set[str]:
    """The value as it appears in text: itself, URL-encoded, and escaped as in repr/JSON strings."""
    forms = {value, quote(value, safe=""), repr(value)[1:-1], json.dumps(value)[1:-1]}
    return {form for form in forms if len(form) >= MIN_SECRET_LEN}


def _redact(text: str, secret: str) -> str:
    head = secret[:PREFIX_LEN]
    start = text.find(head)
    if start < 0:
        return text
    out: list[str] = []
    done = 0
    while start >= 0:
        end = start + len(head)
        while end < len(text) and end - start < len(secret) and text[end] == secret[end - start]:
            end += 1
        out += (text[done:start], REDACTED)
        done = end
        start = text.find(head, end)
    out.append(text[done:])
    return "".join(out)


class Scrubber:
    def __init__(self, data_dir: Path, extra: tuple[str | None, ...] = ()):
        self.folder = data_dir / "secrets"
        self._extra = {v for v in extra if v}
        self._seen: set[str] = set()
        self._listing: tuple[tuple[str, int, int], ...] | None = None
        self._secrets: list[str] = []
        self._lock = threading.Lock()

    def remember(self, value: str | None) -> None:
        """A secret this process read: scrubbed even after its file is gone."""
        if value and value not in self._seen:
            with self._lock:
                self._seen.add(value)
                self._listing = None

    def _current(self) -> list[str]:
        try:
            entries = sorted((e for e in os.scandir(self.folder) if e.is_file()), key=lambda e: e.name)
            stats = [e.stat() for e in entries]
            listing = tuple((e.name, s.st_mtime_ns, s.st_size) for e, s in zip(entries, stats))
        except OSError:  # no secrets folder yet
            entries, listing = [], ()
        if listing != self._listing:
            with self._lock:
                values = set(self._extra) | self._seen
                for entry in entries:
                    try:
                        values.add(Path(entry.path).read_text().strip())
                    except OSError:
                        continue  # deleted meanwhile
                forms = set().union(*(_forms(v) for v in values)) if values else set()
                # Longest first, so a value is never half-replaced by a shorter one inside it.
                self._secrets = sorted(forms, key=len, reverse=True)
                self._listing = listing
        return self._secrets

    def text(self, text: str) -> str:
        return _redact_all(text, self._current())

    def value(self, value: Any) -> Any:
        """``value`` with every string in it (dict keys and values, list items) scrubbed; the secrets
        folder is looked at once for the whole value, not once per string."""
        secrets = self._current()
        if not secrets:
            return value
        return _walk(value, lambda text: _redact_all(text, secrets))


def _redact_all(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        text = _redact(text, secret)
    return text


def _walk(value: Any, text: Any) -> Any:
    if isinstance(value, str):
        return text(value)
    if isinstance(value, dict):
        return {_walk(k, text): _walk(v, text) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_walk(v, text) for v in value)
    if isinstance(value, msgspec.Struct):  # an event's payload: the same Struct, its texts scrubbed
        fields = {name: _walk(getattr(value, name), text) for name in value.__struct_fields__}
        return msgspec.structs.replace(value, **fields)
    return value


class LogFilter(logging.Filter):
    """On a handler: the record's message and traceback are formatted and scrubbed before output."""

    def __init__(self, scrubber: Scrubber):
        super().__init__()
        self.scrubber = scrubber

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad format string is the formatter's to report
            return True
        record.msg = self.scrubber.text(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.scrubber.text(record.exc_text)
        if record.stack_info:
            record.stack_info = self.scrubber.text(record.stack_info)
        return True


_installed: Scrubber | None = None


def install(scrubber: Scrubber) -> None:
    """Make ``scrubber`` the process's (the worker calls this at start) and scrub its log handlers."""
    global _installed
    _installed = scrubber
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, LogFilter) for f in handler.filters):
            handler.addFilter(LogFilter(scrubber))


def remember(value: str | None) -> None:
    if _installed is not None:
        _installed.remember(value)


def scrub(value: Any) -> Any:
    """``value`` (a string, or JSON-like data) with every known secret replaced; unchanged where no
    scrubber is installed."""
    return value if _installed is None else _installed.value(value)
