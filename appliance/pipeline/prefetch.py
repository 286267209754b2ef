"""Running a producer (reading and tokenizing a dataset's batches) one step ahead of its consumer.

The producers here spend their time in code that releases the GIL (Arrow reads, the Rust
tokenizer), so a thread computes the next batches while the consumer's forward pass runs instead
of before it.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")
_END = object()


class Prefetched(Iterator[T]):
    """``items``' elements in order, produced by a background thread up to ``depth`` ahead.

    The producer starts at once (so it can work while the caller still prepares, e.g. loads a
    model). An exception in the producer is raised by the ``next`` that reaches it. ``close()``
    (or leaving a ``with`` block) stops the producer at its next element; the thread is a daemon,
    so one blocked in a slow read never holds the process up.
    """

    def __init__(self, items: Iterable[T], depth: int = 2):
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, depth))
        self._stop = threading.Event()
        self._done = False
        self._thread = threading.Thread(target=self._produce, args=(items,), name="prefetch", daemon=True)
        self._thread.start()

    def _put(self, item: object) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _produce(self, items: Iterable[T]) -> None:
        try:
            for item in items:
                if not self._put(item):
                    return
        except BaseException as exc:  # handed to the consumer, raised there
            self._put(exc)
            return
        self._put(_END)

    def __next__(self) -> T:
        if self._done:
            raise StopIteration
        item = self._queue.get()
        if item is _END:
            self._done = True
            raise StopIteration
        if isinstance(item, BaseException):
            self._done = True
            raise item
        return item

    def close(self) -> None:
        self._done = True
        self._stop.set()

    def __enter__(self) -> "Prefetched[T]":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
