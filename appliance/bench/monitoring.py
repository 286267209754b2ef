"""``mistudio bench monitoring``: what watching the device costs the API process.

The API's CPU time is measured over the same window twice in one run: with no listener (the
baseline: monitoring must cost nothing then) and with one SSE client receiving ``system.metrics``
every ``--interval`` seconds. Target: streaming costs < 1% of one core.
"""

from __future__ import annotations

import argparse
import threading
import time

import httpx

from appliance.bench.harness import Appliance, Figure, cpu_seconds, figures_table, machine_lines, progress, section


def _api_cpu_pct(app: Appliance, seconds: float) -> float:
    before, started = cpu_seconds(app.api_pid), time.monotonic()
    time.sleep(seconds)
    after, wall = cpu_seconds(app.api_pid), time.monotonic() - started
    return 100.0 * ((after or 0) - (before or 0)) / wall


def _listen(app: Appliance, stop: threading.Event, received: list[float]) -> None:
    with httpx.Client(timeout=httpx.Timeout(10, read=None), headers=app.auth_headers()) as client:
        with client.stream("GET", app.url + "/api/events?topics=system") as response:
            for line in response.iter_lines():
                if line.startswith("event: system.metrics"):
                    received.append(time.monotonic())
                if stop.is_set():
                    return


def run(args: argparse.Namespace) -> int:
    window = float(getattr(args, "seconds", 60.0))
    interval = float(getattr(args, "interval", 2.0))
    print(section("mistudio bench monitoring"))
    for line in machine_lines():
        print(line)
    with Appliance(extra_env={"MISTUDIO_METRICS_INTERVAL_S": str(interval)}) as app:
        time.sleep(2)  # let start-up settle
        progress(f"API CPU with nobody listening, {window:.0f} s")
        idle = _api_cpu_pct(app, window)
        stop, received = threading.Event(), []
        listener = threading.Thread(target=_listen, args=(app, stop, received), daemon=True)
        listener.start()
        time.sleep(interval + 1)  # the first samples
        progress(f"API CPU while streaming system.metrics every {interval:g} s, {window:.0f} s")
        count_before = len(received)
        streaming = _api_cpu_pct(app, window)
        events = len(received) - count_before
        stop.set()
    figures = [
        Figure("API CPU, nobody listening", idle, "% of a core", digits=2, note="baseline"),
        Figure(f"API CPU, streaming every {interval:g} s", streaming, "% of a core", target=1.0, digits=2,
               note=f"{events} samples received in {window:.0f} s"),
        Figure("cost of monitoring", streaming - idle, "% of a core", target=1.0, digits=2,
               note="streaming minus baseline"),
    ]
    print(section("Targets"))
    print(figures_table(figures))
    return 0
