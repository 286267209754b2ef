"""Logging for the appliance's processes (API, worker): one format, and a service log that holds the
appliance's own lines.

The ``mistudio.*`` loggers speak at MISTUDIO_LOG_LEVEL, and so does ``uvicorn.error``: the API server's
start, address and stop are the API's own story. Everything else the processes run (transformers,
datasets, huggingface_hub, torch, httpx, huey's three lines per task, uvicorn's access log) shows its
errors always and the rest only at ``debug``: a first-time user of `mistudio up` read a torch
UserWarning and a transformers deprecation as faults of the appliance. Python warnings go through
logging (``py.warnings``) under the same rule. Progress bars are off at every level: in journald or a
log file a tqdm bar is a smear of carriage returns, and each job reports its own progress as events.
"""

from __future__ import annotations

import logging
import os

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
OWN = ("mistudio", "uvicorn.error")

# Read by the libraries when they are imported, so set before any job imports them; a variable the
# user set wins (setdefault). TRANSFORMERS_VERBOSITY matters because transformers writes its
# warnings with a handler of its own ("[transformers] ..."), which a filter on ours never sees.
QUIET_ENV = {
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
    "TQDM_DISABLE": "1",
}
QUIET_LIBRARY_ENV = {"TRANSFORMERS_VERBOSITY": "error", "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1"}


class LibraryFilter(logging.Filter):
    """On a handler: the appliance's records pass; another logger's only at ``library_level`` or above."""

    def __init__(self, library_level: int):
        super().__init__()
        self.library_level = library_level

    def filter(self, record: logging.LogRecord) -> bool:
        own = any(record.name == name or record.name.startswith(name + ".") for name in OWN)
        return own or record.levelno >= self.library_level


def library_level(level: str) -> int:
    """The least a library's record needs to be shown at the appliance's ``level``."""
    configured = logging.getLevelName(level.upper())
    return logging.DEBUG if configured == logging.DEBUG else max(logging.ERROR, configured)


def configure(level: str) -> None:
    """The process's logging at MISTUDIO_LOG_LEVEL ``level`` (call it before torch or a Hub library is
    imported)."""
    for name, value in QUIET_ENV.items():
        os.environ.setdefault(name, value)
    if level != "debug":
        for name, value in QUIET_LIBRARY_ENV.items():
            os.environ.setdefault(name, value)
    logging.basicConfig(level=level.upper(), format=FORMAT)
    quiet = LibraryFilter(library_level(level))
    for handler in logging.getLogger().handlers:
        handler.addFilter(quiet)
    logging.captureWarnings(True)
