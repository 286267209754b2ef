"""`mistudio up`'s supervision: keep the API and the worker running, restarting either when it exits.

The appliance runs unattended, so a process that exits is never given up on. It is started again
after a delay that doubles with each exit in a row (``restart_backoff_s`` up to
``restart_backoff_max_s``): a process that cannot start (a port in use, a broken install) is retried
slowly instead of in a tight loop. One that has stayed up ``restart_healthy_s`` counts as healthy,
and its next exit starts from the first delay again. Each process is restarted alone: the worker's
jobs go on while the API restarts, and the API keeps answering while the worker does.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

from appliance.config import Settings

POLL_S = 0.1
STOP_WAIT_S = 15.0


def _say(message: str) -> None:
    print(f"mistudio: {message}", file=sys.stderr, flush=True)


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


@dataclass
class Child:
    name: str
    argv: list[str]
    proc: subprocess.Popen | None = None
    started: float = 0.0  # time.monotonic() at the last start
    exits: int = 0  # exits in a row, without a healthy period between them
    restart_at: float | None = None


class Supervisor:
    def __init__(
        self,
        children: dict[str, list[str]],
        *,
        backoff_s: float,
        backoff_max_s: float,
        healthy_s: float,
        say: Callable[[str], None] = _say,
    ):
        self.children = {name: Child(name, argv) for name, argv in children.items()}
        self.backoff_s, self.backoff_max_s, self.healthy_s = backoff_s, max(backoff_s, backoff_max_s), healthy_s
        self.say = say

    @classmethod
    def from_settings(cls, settings: Settings, children: dict[str, list[str]]) -> Supervisor:
        return cls(
            children,
            backoff_s=settings.restart_backoff_s,
            backoff_max_s=settings.restart_backoff_max_s,
            healthy_s=settings.restart_healthy_s,
        )

    def start(self, name: str) -> subprocess.Popen:
        child = self.children[name]
        # Own sessions: a Ctrl-C in the terminal reaches only `up`, which stops the children in order.
        child.proc = subprocess.Popen(child.argv, start_new_session=True)
        child.started, child.restart_at = time.monotonic(), None
        return child.proc

    def delay(self, exits: int) -> float:
        return min(self.backoff_s * 2 ** (exits - 1), self.backoff_max_s)

    def poll(self) -> None:
        """Notice exits, schedule restarts, start what is due, reset the backoff of healthy processes."""
        now = time.monotonic()
        for child in self.children.values():
            if child.proc is None:
                if child.restart_at is not None and now >= child.restart_at:
                    proc = self.start(child.name)
                    self.say(f"{child.name} restarted (pid {proc.pid})")
                continue
            code = child.proc.poll()
            if code is None:
                if child.exits and now - child.started >= self.healthy_s:
                    self.say(
                        f"{child.name} up for {self.healthy_s:g} s: healthy, restart delay reset "
                        f"after {child.exits} exit(s) in a row"
                    )
                    child.exits = 0
                continue
            child.exits += 1
            wait = self.delay(child.exits)
            self.say(
                f"{child.name} (pid {child.proc.pid}) {describe_exit(code)} after {now - child.started:.1f} s; "
                f"restarting in {wait:g} s (exit {child.exits} in a row)"
            )
            child.proc, child.restart_at = None, now + wait

    def stop(self) -> None:
        procs = [c.proc for c in self.children.values() if c.proc is not None]
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=STOP_WAIT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def run(self, stopping: Callable[[], bool]) -> None:
        while not stopping():
            time.sleep(POLL_S)
            if not stopping():
                self.poll()
