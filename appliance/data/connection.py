"""Connections with the pragmas every process must agree on.

WAL lets the API read while the worker writes. synchronous=NORMAL survives a killed process (the WAL
lives in the OS page cache); only a power cut can lose the last few commits, which is the usual SQLite
trade-off for a device that writes progress several times a second.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import aiosqlite

BUSY_TIMEOUT_MS = 10_000
_PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=NORMAL",
    "PRAGMA foreign_keys=ON",
    f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}",
)


def connect_sync(path: Path) -> sqlite3.Connection:
    # isolation_level=None: we issue BEGIN ourselves so a transaction spans exactly what we say.
    conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    for pragma in _PRAGMAS:
        conn.execute(pragma)
    return conn


async def connect_async(path: Path) -> aiosqlite.Connection:
    conn = await aiosqlite.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
    conn.row_factory = sqlite3.Row
    for pragma in _PRAGMAS:
        await conn.execute(pragma)
    return conn
