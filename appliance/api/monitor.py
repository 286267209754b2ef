"""The API's monitoring loop: samples only while someone is looking.

It runs while an SSE client listens to ``system:metrics`` (every client without a topic filter
does), or for a while after ``GET /api/system/metrics``; otherwise its source is stopped (no
tegrastats process, no /proc reads). Samples go out as ephemeral ``system.metrics`` events and into
a short in-memory history.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import deque
from collections.abc import Awaitable, Callable

from appliance.config import Settings
from appliance.contracts.events import checked
from appliance.device.platform import PlatformInfo
from appliance.device.procfs import process_rss_mb
from appliance.device.sample import Sample
from appliance.device.sources import MetricsSource, choose_source
from appliance.events.fanout import Broadcaster, cancel_and_wait
from appliance.jobs.records import Event
from appliance.timefmt import iso

log = logging.getLogger("mistudio.monitor")

TOPIC = "system:metrics"
METRICS = "system.metrics"
HISTORY_S = 300.0
# A GET keeps sampling alive this long, so a page polling the endpoint gets fresh figures.
REQUEST_KEEPALIVE_S = 30.0


class Monitor:
    def __init__(
        self,
        settings: Settings,
        platform: PlatformInfo,
        broadcaster: Broadcaster,
        worker_pid: Callable[[], Awaitable[int | None]],
    ):
        self.settings = settings
        self.interval = settings.metrics_interval_s
        self.platform = platform
        self.broadcaster = broadcaster
        self.worker_pid = worker_pid
        self.history: deque[Sample] = deque(maxlen=max(2, int(HISTORY_S / self.interval)))
        self.source: MetricsSource | None = None
        self.samples_taken = 0
        self._last_request = -1e9
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        broadcaster.on_subscribe.append(self._wake.set)

    @property
    def source_name(self) -> str | None:
        return self.source.name if self.source else None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="monitor")

    async def close(self) -> None:
        if self._task:
            await cancel_and_wait(self._task)
        self._stop_source()

    def _wanted(self) -> bool:
        return self.broadcaster.has_listener(TOPIC) or time.monotonic() - self._last_request < REQUEST_KEEPALIVE_S

    def _start_source(self) -> None:
        if self.source is None:
            source = choose_source(
                self.platform.kind, self.settings.host_root, self.settings.tegrastats_path, self.interval
            )
            source.start()
            self.source = source
            log.info("monitoring started (%s)", source.name)

    def _stop_source(self) -> None:
        if self.source is not None:
            self.source.stop()
            log.info("monitoring stopped (%s)", self.source.name)
            self.source = None

    async def _take(self) -> Sample | None:
        assert self.source is not None
        sample = self.source.sample()
        if sample is None or (self.history and sample.timestamp <= self.history[-1].timestamp):
            return None  # tegrastats has not printed a new line yet
        rss = {"api": process_rss_mb(os.getpid())}
        pid = await self.worker_pid()
        if pid:
            rss["worker"] = process_rss_mb(pid)
        sample.process_rss_mb = {k: round(v, 1) for k, v in rss.items() if v is not None}
        self.history.append(sample)
        self.samples_taken += 1
        self.broadcaster.publish(
            Event(
                id=None,
                topic=TOPIC,
                type=METRICS,
                job_id=None,
                data=checked(METRICS, sample),
                created_at=iso(sample.timestamp) or "",
            )
        )
        return sample

    async def _run(self) -> None:
        while True:
            if not self._wanted():
                self._stop_source()
                self._wake.clear()
                await self._wake.wait()
                continue
            try:
                self._start_source()
                await self._take()
            except Exception:  # noqa: BLE001 - a bad read must not end monitoring for good
                log.exception("metrics sample failed")
            await asyncio.sleep(self.interval)

    async def snapshot(self) -> tuple[Sample | None, list[Sample]]:
        """Latest sample and history; starts sampling for a while if it was idle."""
        self._last_request = time.monotonic()
        self._wake.set()
        if not self.history:
            self._start_source()
            # A first CPU load needs two readings; tegrastats needs its first line.
            deadline = time.monotonic() + max(1.5, 2 * self.interval)
            await asyncio.sleep(min(0.25, self.interval))
            while not await self._take() and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
        return (self.history[-1] if self.history else None), list(self.history)
