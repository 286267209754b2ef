"""`mistudio up`: API and worker together in the foreground; Ctrl-C stops both."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import httpx

from tests.support import wait_until


def test_up_runs_both_and_stops_cleanly(make_appliance) -> None:
    app = make_appliance()
    proc = subprocess.Popen(
        [sys.executable, "-m", "appliance", "up"],
        env=app.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:

        def ready() -> bool:
            try:
                return httpx.get(app.url + "/api/health/ready", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(ready, timeout=40, what="`mistudio up` to be ready")
        job_id = app.selftest(steps=2, delay_ms=10)
        app.wait_status(job_id, "completed")
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0, out
        assert "stopping" in out
        worker_pid = int(out.split("worker started (pid ")[1].split(")")[0])
        assert not __import__("os").path.exists(f"/proc/{worker_pid}"), "the worker outlived `up`"
        with __import__("pytest").raises(httpx.HTTPError):
            httpx.get(app.url + "/api/health/live", timeout=1)
    finally:
        if proc.poll() is None:
            proc.kill()


# -- restarts: either process is restarted alone, with a backoff that resets after a healthy period --


class Up:
    """`mistudio up` with its output in a file the test reads as it grows."""

    def __init__(self, app, tmp_path, **env: str):
        self.app = app
        self.log = tmp_path / "up.log"
        self.out = open(self.log, "w")  # noqa: SIM115 - closed by close()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "appliance", "up"],
            env={**app.env, **env},
            text=True,
            stdout=self.out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def text(self) -> str:
        return self.log.read_text()

    def wait_for(self, needle: str, count: int = 1, timeout: float = 60) -> str:
        wait_until(lambda: self.text().count(needle) >= count, timeout=timeout, what=f"{needle!r} x{count} in the log")
        return self.text()

    def live(self) -> bool:
        try:
            return httpx.get(self.app.url + "/api/health/live", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.out.close()


def _pid_after(text: str, marker: str) -> int:
    return int(text.rsplit(marker, 1)[1].split(")")[0])


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ", 1)[1][0] != "Z"
    except FileNotFoundError:
        return False


FAST_RESTARTS = {
    "MISTUDIO_RESTART_BACKOFF_S": "0.05",
    "MISTUDIO_RESTART_BACKOFF_MAX_S": "0.2",
    "MISTUDIO_RESTART_HEALTHY_S": "0.5",
}


def test_up_restarts_the_api_and_leaves_the_worker_alone(make_appliance, tmp_path) -> None:
    app = make_appliance()
    up = Up(app, tmp_path, **FAST_RESTARTS)
    try:
        text = up.wait_for("API started (pid ")
        worker, api = _pid_after(text, "worker started (pid "), _pid_after(text, "API started (pid ")
        wait_until(up.live, timeout=40, what="the API")
        os.kill(api, signal.SIGKILL)
        text = up.wait_for("API restarted (pid ")
        assert f"API (pid {api}) was killed by SIGKILL" in text and "restarting in 0.05 s" in text
        wait_until(up.live, timeout=40, what="the restarted API")
        assert up.proc.poll() is None, "`up` exited with the API"
        assert _alive(worker) and "worker (pid" not in up.text(), "the worker was touched"
        app.wait_status(app.selftest(steps=2, delay_ms=0), "completed")
    finally:
        up.close()


def test_up_keeps_restarting_a_worker_that_exits_after_healthy_periods(make_appliance, tmp_path) -> None:
    app = make_appliance()
    up = Up(app, tmp_path, **FAST_RESTARTS)
    try:
        worker = _pid_after(up.wait_for("API started (pid "), "worker started (pid ")
        wait_until(up.live, timeout=40, what="the API")
        for kill in range(1, 8):  # more than the six exits the old `up` tolerated in its lifetime
            os.kill(worker, signal.SIGKILL)
            text = up.wait_for("worker restarted (pid ", count=kill)
            assert f"worker (pid {worker}) was killed by SIGKILL" in text
            assert "(exit 1 in a row)" in text.rsplit(f"worker (pid {worker})", 1)[1]  # the backoff was reset
            worker = _pid_after(text, "worker restarted (pid ")
            up.wait_for("worker up for 0.5 s: healthy, restart delay reset", count=kill)
        assert up.proc.poll() is None and "giving up" not in up.text()
        app.wait_status(app.selftest(steps=2, delay_ms=0), "completed")
        assert _alive(worker)
    finally:
        up.close()


def test_restart_delay_doubles_up_to_its_cap() -> None:
    from appliance.commands.up import Supervisor

    sup = Supervisor({}, backoff_s=1, backoff_max_s=30, healthy_s=60)
    assert [sup.delay(n) for n in range(1, 8)] == [1, 2, 4, 8, 16, 30, 30]
