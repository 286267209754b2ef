"""``mistudio bench monitoring``: what watching the device costs.

Measured: the CPU time of the API process *and of every process it starts* (on a Jetson the
``tegrastats`` it runs while somebody watches), read from /proc, while one SSE client receives
``system.metrics`` every ``--interval`` seconds. Floor: the same processes over the same length of
time with nobody listening, measured in windows that alternate with the streaming ones (``ROUNDS``
of each, ``--seconds`` per side in all), so the machine's other load weighs on both sides alike.
Target: the cost, streaming minus the floor with tegrastats included, < 1% of one core. A streaming
window in which no sample arrived makes the cost a MISS (it measured nothing).
"""

from __future__ import annotations

import argparse
import threading
import time
from dataclasses import dataclass

import httpx

from appliance.commands.bench.harness import (
    Appliance,
    Figure,
    finish,
    machine_lines,
    progress,
    section,
    tree_cpu_seconds,
)

COST_TARGET_PCT = 1.0
ROUNDS = 4


@dataclass
class Usage:
    """CPU seconds used by the API (``api``) and the processes it started (``children``) over ``wall``."""

    api: float = 0.0
    children: float = 0.0
    wall: float = 0.0

    def pct(self, seconds: float) -> float:
        return 100.0 * seconds / self.wall if self.wall > 0 else float("nan")

    @property
    def total_pct(self) -> float:
        return self.pct(self.api + self.children)

    @property
    def children_pct(self) -> float:
        return self.pct(self.children)

    def add_window(self, app: Appliance, seconds: float) -> None:
        before, started = tree_cpu_seconds(app.api_pid), time.monotonic()
        time.sleep(seconds)
        used, wall = tree_cpu_seconds(app.api_pid) - before, time.monotonic() - started
        self.api += used.own
        self.children += used.children
        self.wall += wall


class _Listener:
    """One SSE client on the system topic in a thread; counts system.metrics events."""

    def __init__(self, app: Appliance):
        self.app = app
        self.events = 0
        self.first = threading.Event()
        self._response: httpx.Response | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="metrics-listener")

    def _run(self) -> None:
        try:
            with httpx.Client(timeout=httpx.Timeout(10, read=None), headers=self.app.auth_headers()) as client:
                with client.stream("GET", self.app.url + "/api/events?topics=system") as response:
                    self._response = response
                    for line in response.iter_lines():
                        if line.startswith("event: system.metrics"):
                            self.events += 1
                            self.first.set()
                        if self._stop.is_set():
                            return
        except (httpx.HTTPError, RuntimeError, ValueError):  # closed under it by stop()
            pass

    def __enter__(self) -> "_Listener":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._response is not None:
            self._response.close()
        self._thread.join(timeout=10)


def monitoring_figures(
    idle: Usage, streaming: Usage, interval: float, events: int, silent_windows: int
) -> list[Figure]:
    """The figures of a run; the cost includes the processes the API started (tegrastats)."""
    cost = streaming.total_pct - idle.total_pct
    children_cost = streaming.children_pct - idle.children_pct
    return [
        Figure(
            "API + started processes, nobody listening",
            idle.total_pct,
            "% of a core",
            digits=2,
            note=f"the floor; started processes {idle.children_pct:.2f}%, {idle.wall:.0f} s",
        ),
        Figure(
            f"API + started processes, streaming every {interval:g} s",
            streaming.total_pct,
            "% of a core",
            digits=2,
            note=f"started processes (tegrastats) {streaming.children_pct:.2f}%; "
            f"{events} samples received in {streaming.wall:.0f} s",
        ),
        Figure(
            "cost of monitoring",
            cost,
            "% of a core",
            target=COST_TARGET_PCT,
            digits=2,
            errors=silent_windows,
            note=f"streaming minus the floor; of which started processes {children_cost:.2f}%"
            + (f"; {silent_windows} streaming windows received no sample" if silent_windows else ""),
        ),
    ]


def run(args: argparse.Namespace) -> int:
    window = float(getattr(args, "seconds", 60.0))
    interval = float(getattr(args, "interval", 2.0))
    slot = window / ROUNDS
    print(section("mistudio bench monitoring"))
    for line in machine_lines():
        print(line)
    idle, streaming = Usage(), Usage()
    events = silent = 0
    with Appliance(extra_env={"MISTUDIO_METRICS_INTERVAL_S": str(interval)}) as app:
        time.sleep(2)  # let start-up settle
        for round_ in range(1, ROUNDS + 1):
            progress(f"round {round_}/{ROUNDS}: {slot:.0f} s with nobody listening, then {slot:.0f} s streaming")
            idle.add_window(app, slot)
            with _Listener(app) as listener:
                # The window starts once sampling runs (tegrastats started, its first line read).
                sampling = listener.first.wait(10 + 2 * interval)
                before = listener.events
                streaming.add_window(app, slot)
                received = listener.events - before
            events += received
            silent += not sampling or received == 0
            # Sampling (and tegrastats) stops within an interval of the last listener leaving.
            time.sleep(2 * interval + 1)
    return finish(
        "monitoring",
        monitoring_figures(idle, streaming, interval, events, silent),
        settings={"seconds_per_side": window, "interval_s": interval, "rounds": ROUNDS, **app.passed_settings()},
    )
