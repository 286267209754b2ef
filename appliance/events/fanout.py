"""Fan-out of the events table to SSE clients in the API process.

One poller tails the table (only while someone listens) and hands new rows to subscriber queues, so
the cost of polling does not grow with the number of clients. A subscriber first replays what it
missed from the table (Last-Event-ID) and then takes live rows from its queue, skipping anything it
already sent: every event exactly once, in id order.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from appliance.data import connect_sync
from appliance.data import events as sql
from appliance.data.database import AsyncDatabase
from appliance.jobs.records import Event, event_from_row

log = logging.getLogger("mistudio.events")

QUEUE_LIMIT = 10_000
PAGE = 500
BUSY_S = 2.0
IDLE_POLL_S = 0.1


def topic_matches(filters: tuple[str, ...], topic: str) -> bool:
    """``training`` matches ``training:tr_x``; ``training:tr_x`` matches itself; no filter matches all."""
    if not filters:
        return True
    return any(topic == f or topic.startswith(f + ":") for f in filters)


async def cancel_and_wait(task: asyncio.Task[None]) -> None:
    """Cancel a background loop and wait until it has ended, so nothing it holds is used after close."""
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass


@dataclass(eq=False)
class Subscription:
    topics: tuple[str, ...]
    job_id: str | None
    start: int  # the client has seen everything up to this id
    queue: asyncio.Queue[Event | None] = field(default_factory=lambda: asyncio.Queue(QUEUE_LIMIT))
    overflowed: bool = False

    def wants(self, event: Event) -> bool:
        if self.job_id is not None and event.job_id != self.job_id:
            return False
        return topic_matches(self.topics, event.topic)


class Broadcaster:
    def __init__(self, poll_s: float):
        self.poll_s = poll_s
        self.subscribers: set[Subscription] = set()
        self.cursor = 0
        self._db: AsyncDatabase | None = None
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._closed = False
        self.on_subscribe: list[Callable[[], None]] = []

    async def start(self, db: AsyncDatabase, db_path: Path) -> None:
        # A connection of its own (only read here): the tail must not queue behind request handlers' queries.
        self._db = db
        self._version_conn = connect_sync(db_path)
        self._seen_version: int | None = None
        self._last_change = 0.0
        self.cursor = await db.scalar(sql.last_id())
        self._task = asyncio.create_task(self._run(), name="event-broadcaster")

    async def close(self) -> None:
        self._closed = True
        for sub in list(self.subscribers):
            self._offer(sub, None)
        if self._task:
            await cancel_and_wait(self._task)
            self._task = None
            self._version_conn.close()

    async def subscribe(
        self, topics: tuple[str, ...], job_id: str | None = None, last_event_id: int | None = None
    ) -> Subscription:
        """Register a client. Without a Last-Event-ID it starts from the newest stored event."""
        if last_event_id is None:
            last_event_id = await self.last_id()
        sub = Subscription(topics, job_id, last_event_id)
        self.subscribers.add(sub)
        if self._closed:
            self._offer(sub, None)
        self._wake.set()
        for hook in self.on_subscribe:
            hook()
        return sub

    def has_listener(self, topic: str) -> bool:
        return any(sub.job_id is None and topic_matches(sub.topics, topic) for sub in self.subscribers)

    def publish(self, event: Event) -> None:
        """Hand an ephemeral event (no id, not stored) to the subscribers that want it."""
        for sub in list(self.subscribers):
            if sub.wants(event):
                self._offer(sub, event)

    async def last_id(self) -> int:
        assert self._db is not None
        last: int = await self._db.scalar(sql.last_id())
        return last

    def unsubscribe(self, sub: Subscription) -> None:
        self.subscribers.discard(sub)

    def _offer(self, sub: Subscription, event: Event | None) -> None:
        try:
            sub.queue.put_nowait(event)
        except asyncio.QueueFull:
            sub.overflowed = True  # the subscriber re-reads from the table

    async def _run(self) -> None:
        assert self._db is not None
        while True:
            if not self.subscribers:
                self._wake.clear()
                await self._wake.wait()
                # Skip what was written while nobody listened, but never past a new subscriber's
                # start: each subscriber replays up to its start itself and skips duplicates.
                if self.subscribers:
                    self.cursor = max(self.cursor, min(sub.start for sub in self.subscribers))
                continue
            # PRAGMA data_version changes whenever another connection commits; reading it inline costs
            # microseconds, so the tail can look every 10 ms and query only when something was written.
            # While events flow it looks every poll_s (10 ms); after BUSY_S without a change it backs off
            # to IDLE_POLL_S, so a quiet appliance with a page open costs almost nothing.
            version = self._version_conn.execute("PRAGMA data_version").fetchone()[0]
            if version == self._seen_version:
                quiet = asyncio.get_running_loop().time() - self._last_change
                await asyncio.sleep(self.poll_s if quiet < BUSY_S else max(self.poll_s, IDLE_POLL_S))
                continue
            self._seen_version = version
            try:
                rows = await self._db.all(sql.after(self.cursor, PAGE))
            except sqlite3.OperationalError:
                log.warning("event tail failed; retrying", exc_info=True)
                rows = []
            if rows:  # new events, not just any commit (the worker's heartbeat commits every 2 s)
                self._last_change = asyncio.get_running_loop().time()
            for row in rows:
                event = event_from_row(row)
                self.cursor = row["id"]
                for sub in list(self.subscribers):
                    if sub.wants(event):
                        self._offer(sub, event)
            if len(rows) < PAGE:
                await asyncio.sleep(self.poll_s)

    async def replay(self, sub: Subscription, after_id: int) -> tuple[list[Event], int, bool]:
        """One page of stored events after ``after_id`` for this subscriber.

        Returns the wanted events, the last row id scanned and whether more rows may follow.
        """
        assert self._db is not None
        rows = await self._db.all(sql.after(after_id, PAGE, sub.job_id))
        events = [event for event in map(event_from_row, rows) if sub.wants(event)]
        return events, (rows[-1]["id"] if rows else after_id), len(rows) == PAGE
