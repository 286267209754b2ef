"""What every benchmark suite shares: a throw-away appliance to measure, process figures, and the
printed report (settings, machine, and a figures table with targets and PASS/MISS).

Only the standard library here, so importing the harness costs nothing.
"""

from __future__ import annotations

import math
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import appliance

# The checkout (or site-packages dir) that holds the `appliance` package the bench itself runs from:
# the appliance under test must be the same code.
_PACKAGE_ROOT = Path(appliance.__file__).resolve().parent.parent
# Settings the harness chooses itself; any other MISTUDIO_* variable is passed on, so a setting can
# be benchmarked by exporting it (e.g. MISTUDIO_SSE_POLL_S=0.02 mistudio bench api).
_OWN_SETTINGS = ("MISTUDIO_DATA_DIR", "MISTUDIO_HOST", "MISTUDIO_PORT")
_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


class BenchError(RuntimeError):
    """The benchmark could not run (as opposed to a figure that misses its target)."""


def progress(message: str) -> None:
    """A progress line on stderr, so stdout carries only the report."""
    print(f"  .. {message}", file=sys.stderr, flush=True)


# -- processes ------------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rss_mb(pid: int) -> float | None:
    """Resident set size (VmRSS) of a live process in MB (10^6 bytes), or None if it is gone."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024 / 1e6
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return None


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time a process (all its threads) has used so far."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            raw = stat.read()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    fields = raw[raw.rindex(")") + 2:].split()  # the command name may contain spaces
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


class CpuMeter:
    """CPU used by the API, the worker and this (client) process over a stretch of wall time."""

    def __init__(self, app: "Appliance"):
        self.app = app
        self._start: tuple[float, float, float, float] | None = None
        self.wall = self.api = self.worker = self.client = 0.0

    def _sample(self) -> tuple[float, float, float, float]:
        return (time.perf_counter(), cpu_seconds(self.app.api_pid) or 0.0,
                cpu_seconds(self.app.worker_pid) or 0.0, time.process_time())

    def __enter__(self) -> "CpuMeter":
        self._start = self._sample()
        return self

    def __exit__(self, *exc: Any) -> None:
        assert self._start is not None
        end = self._sample()
        self.wall, self.api, self.worker, self.client = (b - a for a, b in zip(self._start, end))

    def summary(self) -> str:
        """e.g. 'api 1.62 s (81% of a core), worker 0.10 s (5%), bench client 1.20 s (60%)'."""
        def part(name: str, seconds: float) -> str:
            share = 100 * seconds / self.wall if self.wall > 0 else 0.0
            return f"{name} {seconds:.2f} s ({share:.0f}%)"
        return (f"CPU over {self.wall:.1f} s: " + ", ".join(
            (part("api", self.api), part("worker", self.worker), part("bench client", self.client)))
            + f" [% of one core; {os.cpu_count()} cores]")


@dataclass
class Appliance:
    """API and worker processes on 127.0.0.1:<free port> with a fresh temporary data dir.

    ``with Appliance() as app:`` starts both, waits for ``/api/health/ready`` and, on leaving, stops
    both with SIGTERM (SIGKILL after ``stop_timeout_s``) and removes the temporary directory.
    """

    extra_env: dict[str, str] = field(default_factory=dict)
    ready_timeout_s: float = 60.0
    stop_timeout_s: float = 20.0
    keep: bool = False  # keep the temp dir (data and logs) after stopping, for a post-mortem
    port: int = 0
    root: Path | None = None
    api: subprocess.Popen | None = None
    worker: subprocess.Popen | None = None
    exit_codes: dict[str, int | None] = field(default_factory=dict)
    stop_s: dict[str, float] = field(default_factory=dict)  # SIGTERM to exit, per process
    started_s: float = 0.0  # how long start-up to ready took

    # -- where and how ----------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def data_dir(self) -> Path:
        assert self.root is not None
        return self.root / "data"

    @property
    def api_pid(self) -> int:
        assert self.api is not None
        return self.api.pid

    @property
    def worker_pid(self) -> int:
        assert self.worker is not None
        return self.worker.pid

    @property
    def token(self) -> str | None:
        return self.env().get("MISTUDIO_TOKEN") or None

    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def env(self) -> dict[str, str]:
        # No demo seeding unless a suite asks for it: its jobs would run during other suites' timings.
        env = {"MISTUDIO_SEED_DEMO": "0", **{k: v for k, v in os.environ.items() if k not in _OWN_SETTINGS}}
        env.update({
            "MISTUDIO_DATA_DIR": str(self.data_dir),
            "MISTUDIO_HOST": "127.0.0.1",
            "MISTUDIO_PORT": str(self.port),
            "PYTHONUNBUFFERED": "1",
            "PYTHONPATH": os.pathsep.join(p for p in (str(_PACKAGE_ROOT), os.environ.get("PYTHONPATH")) if p),
        })
        env.update(self.extra_env)
        return env

    def passed_settings(self) -> dict[str, str]:
        """MISTUDIO_* settings the appliance under test gets beyond the harness's own."""
        return {k: ("***" if k == "MISTUDIO_TOKEN" else v) for k, v in sorted(self.env().items())
                if k.startswith("MISTUDIO_") and k not in _OWN_SETTINGS}

    def log_tail(self, what: str, chars: int = 3000) -> str:
        path = self.root / f"{what}.log" if self.root else None
        return path.read_text(errors="replace")[-chars:] if path and path.exists() else ""

    # -- lifecycle ------------------------------------------------------------------------------
    def _spawn(self, what: str) -> subprocess.Popen:
        assert self.root is not None
        with open(self.root / f"{what}.log", "ab") as log:
            return subprocess.Popen([sys.executable, "-m", "appliance", what], env=self.env(),
                                    cwd=self.root, stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True)

    def start(self) -> "Appliance":
        self.root = Path(tempfile.mkdtemp(prefix="mistudio-bench-"))
        self.data_dir.mkdir()
        self.port = self.port or free_port()
        began = time.perf_counter()
        try:
            # The worker migrates the DB and writes the heartbeat /ready waits for; the API migrates
            # too, so the order does not matter. Both import at once to save start-up time.
            self.worker = self._spawn("worker")
            self.api = self._spawn("serve")
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        self.started_s = time.perf_counter() - began
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.ready_timeout_s
        last = "no answer"
        while True:
            for name, proc in (("serve", self.api), ("worker", self.worker)):
                assert proc is not None
                if proc.poll() is not None:
                    raise BenchError(f"the {'API' if name == 'serve' else 'worker'} exited with code "
                                     f"{proc.returncode} during start-up:\n{self.log_tail(name)}")
            request = urllib.request.Request(self.url + "/api/health/ready", headers=self.auth_headers())
            try:
                with urllib.request.urlopen(request, timeout=2) as response:
                    if response.status == 200:
                        return
                    last = f"HTTP {response.status}"
            except urllib.error.HTTPError as exc:
                last = f"HTTP {exc.code}: {exc.read(300).decode(errors='replace')}"
            except OSError as exc:
                last = str(exc)
            if time.monotonic() > deadline:
                raise BenchError(f"the appliance was not ready after {self.ready_timeout_s:.0f}s ({last})\n"
                                 f"--- API log ---\n{self.log_tail('serve')}\n"
                                 f"--- worker log ---\n{self.log_tail('worker')}")
            time.sleep(0.1)

    def stop(self) -> None:
        """SIGTERM both processes, wait for them (SIGKILL after the timeout), remove the temp dir."""
        procs = [(name, proc) for name, proc in (("api", self.api), ("worker", self.worker)) if proc is not None]
        for _, proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        began = time.monotonic()
        deadline = began + self.stop_timeout_s
        for name, proc in procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                progress(f"the {name} did not stop within {self.stop_timeout_s:.0f}s of SIGTERM: killing it")
                proc.kill()
                proc.wait()
            self.exit_codes[name] = proc.returncode
            self.stop_s.setdefault(name, time.monotonic() - began)
        if self.root is not None and not self.keep:
            shutil.rmtree(self.root, ignore_errors=True)

    def exit_summary(self) -> str:
        """e.g. 'api stopped by SIGTERM in 0.4 s, worker exit 0 in 0.3 s'."""
        parts = []
        for name, code in self.exit_codes.items():
            # uvicorn re-raises the signal after its graceful shutdown, so -SIGTERM is a clean stop.
            how = "stopped by SIGTERM" if code == -signal.SIGTERM else f"exit {code}"
            parts.append(f"{name} {how} in {self.stop_s.get(name, 0.0):.1f} s")
        return ", ".join(parts) or "not stopped yet"

    def __enter__(self) -> "Appliance":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


# -- statistics -----------------------------------------------------------------------------------

def percentile(values: Sequence[float], p: float) -> float:
    """Linear-interpolated percentile (numpy's default); NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    k = (len(ordered) - 1) * p / 100
    lo, hi = math.floor(k), math.ceil(k)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


# -- the report -----------------------------------------------------------------------------------

@dataclass
class Figure:
    """One measured value, optionally with a target: ``value < target`` (or ``>`` with higher_is_better)."""

    name: str
    value: float | None
    unit: str = ""
    target: float | None = None
    higher_is_better: bool = False
    note: str = ""
    digits: int = 1

    @property
    def verdict(self) -> str:
        if self.target is None:
            return ""
        if self.value is None or math.isnan(self.value):
            return "MISS"
        ok = self.value > self.target if self.higher_is_better else self.value < self.target
        return "PASS" if ok else "MISS"

    def cells(self) -> list[str]:
        value = "n/a" if self.value is None or math.isnan(self.value) else f"{self.value:.{self.digits}f} {self.unit}"
        target = "" if self.target is None else f"{'>' if self.higher_is_better else '<'} {self.target:g} {self.unit}"
        return [self.name, value.strip(), target.strip(), self.verdict, self.note]


def table(headers: Sequence[str], rows: Iterable[Sequence[str]], right: Sequence[int] = ()) -> str:
    """A plain-text table; column indexes in ``right`` are right-aligned."""
    rows = [list(map(str, row)) for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        out = [c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths))]
        return "  ".join(out).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(headers), rule, *(line(r) for r in rows)])


def figures_table(figures: Sequence[Figure]) -> str:
    return table(["figure", "value", "target", "result", "note"], [f.cells() for f in figures], right=(1,))


def section(title: str) -> str:
    return f"\n{title}\n{'=' * len(title)}"


def machine_lines() -> list[str]:
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 0
    model = ""
    try:
        with open("/proc/cpuinfo") as info:
            model = next((line.split(":", 1)[1].strip() for line in info if line.startswith("model name")), "")
    except OSError:
        pass
    mem = ""
    try:
        with open("/proc/meminfo") as info:
            total_kb = next(int(line.split()[1]) for line in info if line.startswith("MemTotal:"))
        mem = f", {total_kb / 1e6:.1f} GB RAM"
    except (OSError, StopIteration):
        pass
    load = ""
    if hasattr(os, "getloadavg"):
        load = "load average " + " / ".join(f"{x:.2f}" for x in os.getloadavg())
    return [
        f"machine : {os.cpu_count()} cores ({usable} usable){', ' + model if model else ''}{mem}",
        f"          {platform.platform()}; Python {platform.python_version()}; {load}",
    ]


def kv_lines(pairs: Sequence[tuple[str, Any]]) -> list[str]:
    width = max((len(k) for k, _ in pairs), default=0)
    return [f"{k.ljust(width)} : {v}" for k, v in pairs]



def wait_job(client: Any, job_id: str) -> dict[str, Any]:
    """Poll a job until it ends; its final state, or BenchError if it did not complete."""
    while (job := client.get(f"/api/jobs/{job_id}").json()["data"])["status"] not in ("completed", "failed", "cancelled"):
        time.sleep(0.5)
    if job["status"] != "completed":
        raise BenchError(f"job {job_id} {job['status']}: {job['error']}")
    return job


def wait_demo(client: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """The demo dataset and model once both are ready (the appliance seeds them on first start)."""
    progress("waiting for the demo dataset and model")
    while True:
        datasets = [d for d in client.get("/api/datasets").json()["data"] if d["source"] == "demo"]
        models = [m for m in client.get("/api/models").json()["data"] if m["source"] == "demo"]
        if datasets and models and datasets[0]["status"] == "ready" and models[0]["status"] == "ready":
            return datasets[0], models[0]
        if any(x["status"] == "error" for x in datasets + models):
            raise BenchError("the demo dataset or model failed to build")
        time.sleep(0.5)


def start_job(client: Any, path: str, body: dict[str, Any]) -> dict[str, Any]:
    """POST a request that starts a job, and wait for the job (see wait_job)."""
    return wait_job(client, client.post(path, json=body).json()["data"]["job_id"])


def train_sae(client: Any, model: dict[str, Any], dataset: dict[str, Any], encoder_type: str,
              hyperparameters: dict[str, Any], max_samples: int, context_length: int) -> str:
    """An SAE on layer 2 of ``model``, activations streamed from ``dataset``; its training id."""
    job = start_job(client, "/api/training/start", {
        "model_id": model["id"], "dataset_id": dataset["id"], "layer": 2, "encoder_type": encoder_type,
        "max_samples": max_samples, "context_length": context_length, "hyperparameters": hyperparameters})
    return job["target"]["id"]
