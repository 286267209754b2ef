"""`mistudio up`: API and worker together in the foreground; Ctrl-C stops both."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import httpx

from tests.support import wait_until


def test_up_runs_both_and_stops_cleanly(make_appliance) -> None:
    app = make_appliance()
    proc = subprocess.Popen([sys.executable, "-m", "appliance", "up"], env=app.env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        def ready() -> bool:
            try:
                return httpx.get(app.url + "/api/health/ready", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(ready, timeout=40, what="`mistudio up` to be ready")
        job_id = app.selftest(steps=2, delay_ms=10)
        app.wait_status(job_id, "completed")
        started = time.monotonic()
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
        assert time.monotonic() - started < 15
        assert proc.returncode == 0, out
        assert "stopping" in out
        worker_pid = int(out.split("worker started (pid ")[1].split(")")[0])
        assert not __import__("os").path.exists(f"/proc/{worker_pid}"), "the worker outlived `up`"
        with __import__("pytest").raises(httpx.HTTPError):
            httpx.get(app.url + "/api/health/live", timeout=1)
    finally:
        if proc.poll() is None:
            proc.kill()
