"""Running the data-access layer's statements: one synchronous and one asynchronous door onto the
same SQLite file.

The table modules beside this one (``appliance.data.trainings``, ...) return statements as
``(sql, params)`` and decode rows; they never hold a connection, so the API (aiosqlite, one shared
connection) and the worker (sqlite3, short connections per thread) run exactly the same SQL.
``transaction()`` is how a state change and its event commit together.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import aiosqlite

from appliance.data.connection import connect_sync

Query = tuple[str, tuple[Any, ...]]
Row = sqlite3.Row


class Database:
    """The worker's and the CLI's door: one connection per thread, opened on first use."""

    def __init__(self, path: Path):
        self.path = path
        self._local = threading.local()

    @property
    def conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = connect_sync(self.path)
        return conn

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def one(self, query: Query) -> Row | None:
        row: Row | None = self.conn.execute(*query).fetchone()
        return row

    def all(self, query: Query) -> list[Row]:
        return list(self.conn.execute(*query).fetchall())

    def scalar(self, query: Query) -> Any:
        row = self.conn.execute(*query).fetchone()
        return row[0] if row else None

    def execute(self, query: Query) -> int:
        """One statement in its own implicit transaction; the number of rows it changed."""
        return self.conn.execute(*query).rowcount

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE .. COMMIT (ROLLBACK on any error); run statements on the yielded connection."""
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException:
            rollback(conn)
            raise

    def write(self, *queries: Query) -> list[int]:
        """Several statements as one transaction; the rows each changed."""
        with self.transaction() as conn:
            return [conn.execute(*query).rowcount for query in queries]


class AsyncDatabase:
    """The API's door: one aiosqlite connection shared by all requests, writes serialised by a lock so
    transactions never interleave."""

    def __init__(self, conn: aiosqlite.Connection, lock: asyncio.Lock | None = None):
        self.conn = conn
        self.lock = lock or asyncio.Lock()

    async def one(self, query: Query) -> Row | None:
        # Fetched and reset in one hop to aiosqlite's thread: a cursor left open across hops keeps its
        # statement (and an ORDER BY's sorter) alive, and under 50 concurrent requests that held ~6 MB
        # (measured: API RSS after the API bench). A query that can match many rows says LIMIT 1.
        rows = await self.conn.execute_fetchall(*query)
        return rows[0] if rows else None  # type: ignore[index]

    async def all(self, query: Query) -> list[Row]:
        return list(await self.conn.execute_fetchall(*query))

    async def scalar(self, query: Query) -> Any:
        row = await self.one(query)
        return row[0] if row else None

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """Under the write lock, BEGIN IMMEDIATE .. COMMIT (ROLLBACK on any error)."""
        async with self.lock:
            await self.conn.execute("BEGIN IMMEDIATE")
            try:
                yield self.conn
                await self.conn.execute("COMMIT")
            except BaseException:
                await rollback_async(self.conn)
                raise

    async def write(self, *queries: Query) -> list[int]:
        """Several statements as one transaction; the rows each changed."""
        async with self.transaction() as conn:
            return [(await conn.execute(*query)).rowcount for query in queries]


def rollback(conn: sqlite3.Connection) -> None:
    # SQLite may already have rolled back on its own (SQLITE_FULL at COMMIT does); a ROLLBACK then
    # fails, and that must not hide the error that caused it.
    try:
        conn.execute("ROLLBACK")
    except sqlite3.OperationalError:
        pass


async def rollback_async(conn: aiosqlite.Connection) -> None:
    try:
        await conn.execute("ROLLBACK")
    except sqlite3.OperationalError:
        pass


def placeholders(values: Sequence[Any]) -> str:
    return ",".join("?" * len(values))


def assignments(fields: dict[str, Any]) -> str:
    """``a = ?, b = ?`` for an UPDATE; column names come from code, never from clients."""
    return ", ".join(f"{name} = ?" for name in fields)
