"""What every benchmark suite shares: a throw-away appliance to measure, process figures, and the
printed report (settings, machine, and a figures table with targets and PASS/MISS).

One exit convention for every suite, and one way to end a suite's ``run``:

    return finish("extraction", figures, settings={"samples": samples})

``finish(suite, figures, settings=None) -> int`` prints the "Figures" table and a one-line verdict,
records the run (machine, date, settings, figures, verdicts) as ``docs/bench/<suite>.json`` (see
``run_record``; ``mistudio bench --no-record`` skips it) and returns the exit code:

    0    every target met
    1    at least one target missed (a figure with a target that is MISS, or n/a)
    2    the benchmark itself could not run (raise ``BenchError``: the appliance did not start, a
         setup request failed, ...); ``appliance.commands.bench.run_bench`` maps it to 2
    130  interrupted

A figure without a target is reported, never judged. Errors that happen *during* a measurement
(failed requests, lost events, a non-200 page) are not fatal: they make that figure a MISS — pass
``errors=<count>`` to its ``Figure``.

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
    fields = raw[raw.rindex(")") + 2 :].split()  # the command name may contain spaces
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def _stat_fields(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            raw = stat.read()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return raw[raw.rindex(")") + 2 :].split()  # fields from 3 (state) on; the name may contain spaces


def _children_of(pids: set[int]) -> set[int]:
    """Live (or not yet reaped) processes whose parent is in ``pids``."""
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (fields := _stat_fields(int(entry))) is not None and int(fields[1]) in pids:
            found.add(int(entry))
    return found


@dataclass(frozen=True)
class TreeCpu:
    """CPU seconds of a process (``own``) and of every process it started (``children``)."""

    own: float
    children: float
    live_children: int = 0

    @property
    def total(self) -> float:
        return self.own + self.children

    def __sub__(self, other: "TreeCpu") -> "TreeCpu":
        return TreeCpu(self.own - other.own, self.children - other.children, self.live_children)


def tree_cpu_seconds(pid: int) -> TreeCpu:
    """CPU used so far by ``pid`` and all its descendants, e.g. the API and the ``tegrastats`` it starts.

    A descendant's time is counted while it lives (its utime+stime, plus cutime+cstime of the
    processes it reaped) and, once its parent reaps it, in the parent's cutime+cstime: the kernel moves
    it there, so the sum neither loses nor counts twice a child that exits between two readings.
    """
    fields = _stat_fields(pid)
    if fields is None:
        return TreeCpu(0.0, 0.0)
    own = (int(fields[11]) + int(fields[12])) / _CLK_TCK
    children = (int(fields[13]) + int(fields[14])) / _CLK_TCK
    seen: set[int] = set()
    level = _children_of({pid})
    while level - seen:
        level -= seen
        seen |= level
        for child in level:
            if (child_fields := _stat_fields(child)) is not None:
                children += sum(int(child_fields[i]) for i in (11, 12, 13, 14)) / _CLK_TCK
        level = _children_of(level)
    return TreeCpu(own, children, len(seen))


class CpuMeter:
    """CPU used by the API, the worker and this (client) process over a stretch of wall time."""

    def __init__(self, app: "Appliance"):
        self.app = app
        self._start: tuple[float, float, float, float] | None = None
        self.wall = self.api = self.worker = self.client = 0.0

    def _sample(self) -> tuple[float, float, float, float]:
        return (
            time.perf_counter(),
            cpu_seconds(self.app.api_pid) or 0.0,
            cpu_seconds(self.app.worker_pid) or 0.0,
            time.process_time(),
        )

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

        return (
            f"CPU over {self.wall:.1f} s: "
            + ", ".join((part("api", self.api), part("worker", self.worker), part("bench client", self.client)))
            + f" [% of one core; {os.cpu_count()} cores]"
        )


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
    started_s: float = 0.0  # how long start-up to ready took (API and worker, started together)
    api_up_s: float = 0.0  # how long until the API answered at all (its own start-up)

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
        env.update(
            {
                "MISTUDIO_DATA_DIR": str(self.data_dir),
                "MISTUDIO_HOST": "127.0.0.1",
                "MISTUDIO_PORT": str(self.port),
                "PYTHONUNBUFFERED": "1",
                "PYTHONPATH": os.pathsep.join(p for p in (str(_PACKAGE_ROOT), os.environ.get("PYTHONPATH")) if p),
            }
        )
        env.update(self.extra_env)
        return env

    def passed_settings(self) -> dict[str, str]:
        """MISTUDIO_* settings the appliance under test gets beyond the harness's own."""
        return {
            k: ("***" if k == "MISTUDIO_TOKEN" else v)
            for k, v in sorted(self.env().items())
            if k.startswith("MISTUDIO_") and k not in _OWN_SETTINGS
        }

    def log_tail(self, what: str, chars: int = 3000) -> str:
        path = self.root / f"{what}.log" if self.root else None
        return path.read_text(errors="replace")[-chars:] if path and path.exists() else ""

    # -- lifecycle ------------------------------------------------------------------------------
    def _spawn(self, what: str) -> subprocess.Popen:
        assert self.root is not None
        with open(self.root / f"{what}.log", "ab") as log:
            return subprocess.Popen(
                [sys.executable, "-m", "appliance", what],
                env=self.env(),
                cwd=self.root,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

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
            self._wait_ready(began)
        except BaseException:
            self.stop()
            raise
        self.started_s = time.perf_counter() - began
        return self

    def _wait_ready(self, began: float | None = None) -> None:
        began = time.perf_counter() if began is None else began
        deadline = time.monotonic() + self.ready_timeout_s
        last = "no answer"
        while True:
            for name, proc in (("serve", self.api), ("worker", self.worker)):
                assert proc is not None
                if proc.poll() is not None:
                    raise BenchError(
                        f"the {'API' if name == 'serve' else 'worker'} exited with code "
                        f"{proc.returncode} during start-up:\n{self.log_tail(name)}"
                    )
            request = urllib.request.Request(self.url + "/api/health/ready", headers=self.auth_headers())
            try:
                with urllib.request.urlopen(request, timeout=2) as response:
                    self.api_up_s = self.api_up_s or time.perf_counter() - began
                    if response.status == 200:
                        return
                    last = f"HTTP {response.status}"
            except urllib.error.HTTPError as exc:
                # Any answer (503 while the worker starts) means the API itself is up.
                self.api_up_s = self.api_up_s or time.perf_counter() - began
                last = f"HTTP {exc.code}: {exc.read(300).decode(errors='replace')}"
            except OSError as exc:
                last = str(exc)
            if time.monotonic() > deadline:
                raise BenchError(
                    f"the appliance was not ready after {self.ready_timeout_s:.0f}s ({last})\n"
                    f"--- API log ---\n{self.log_tail('serve')}\n"
                    f"--- worker log ---\n{self.log_tail('worker')}"
                )
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
    # Failures while measuring it (failed requests, lost or duplicated events, non-200 pages): a
    # figure measured with errors is a MISS whatever its value, and even without a target.
    errors: int = 0

    @property
    def verdict(self) -> str:
        if self.errors:
            return "MISS"
        if self.target is None:
            return ""
        if self.value is None or math.isnan(self.value):
            return "MISS"
        return "PASS" if self.meets(self.value, self.target) else "MISS"

    def meets(self, value: float, target: float) -> bool:
        """Whether a measured value reaches the target (errors and missing values are judged before)."""
        return value > target if self.higher_is_better else value < target

    def value_text(self) -> str:
        if self.value is None or math.isnan(self.value):
            return "n/a"
        return f"{self.value:,.{self.digits}f} {self.unit}".strip()

    def target_text(self) -> str:
        if self.target is None:
            return ""
        return f"{'>' if self.higher_is_better else '<'} {self.target:g} {self.unit}".strip()

    def note_text(self) -> str:
        errors = f"{self.errors} error{'s' if self.errors != 1 else ''}" if self.errors else ""
        return "; ".join(part for part in (errors, self.note) if part)

    def cells(self) -> list[str]:
        return [self.name, self.value_text(), self.target_text(), self.verdict, self.note_text()]

    def to_record(self) -> dict[str, Any]:
        value = None if self.value is None or math.isnan(self.value) else self.value
        return {
            "name": self.name,
            "value": value,
            "unit": self.unit,
            "target": self.target,
            "higher_is_better": self.higher_is_better,
            "digits": self.digits,
            "errors": self.errors,
            "note": self.note,
            "text": self.value_text(),
            "target_text": self.target_text(),
            "verdict": self.verdict,
        }


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


def machine_info() -> dict[str, Any]:
    """What the figures were measured on, for the printed report and the recorded run."""
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
    ram_gb = None
    try:
        with open("/proc/meminfo") as info:
            total_kb = next(int(line.split()[1]) for line in info if line.startswith("MemTotal:"))
        ram_gb = round(total_kb / 1e6, 1)
    except (OSError, StopIteration):
        pass
    return {
        "cores": os.cpu_count(),
        "usable_cores": usable,
        "cpu": model,
        "ram_gb": ram_gb,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "load_average": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
    }


def machine_lines(info: dict[str, Any] | None = None) -> list[str]:
    info = info or machine_info()
    model = f", {info['cpu']}" if info.get("cpu") else ""
    mem = f", {info['ram_gb']:.1f} GB RAM" if info.get("ram_gb") else ""
    load = "load average " + " / ".join(f"{x:.2f}" for x in info["load_average"]) if info.get("load_average") else ""
    return [
        f"machine : {info['cores']} cores ({info['usable_cores']} usable){model}{mem}",
        f"          {info['platform']}; Python {info['python']}; {load}",
    ]


def opening(suite: str, args: Any) -> tuple[int, int]:
    """Print the suite's title and the machine it runs on; the (threads, repeats) asked for on the command
    line, 1 and 3 when not given. Sizing torch's threads is left to the suite: how it does so is part of
    what some suites measure."""
    threads = int(getattr(args, "threads", 1) or 1)
    repeats = max(1, int(getattr(args, "repeats", 3) or 3))
    print(section(f"mistudio bench {suite}"))
    for line in machine_lines():
        print(line)
    return threads, repeats


def kv_lines(pairs: Sequence[tuple[str, Any]]) -> list[str]:
    width = max((len(k) for k, _ in pairs), default=0)
    return [f"{k.ljust(width)} : {v}" for k, v in pairs]


# -- the verdict, the exit code and the record ------------------------------------------------------

EXIT_MET, EXIT_MISSED, EXIT_BROKEN, EXIT_INTERRUPTED = 0, 1, 2, 130

# Where finish() records runs; run_bench sets it from --record-dir / --no-record (None: do not record).
RECORD_DIR: Path | None = None


def exit_code(figures: Sequence[Figure]) -> int:
    """EXIT_MISSED if any figure is a MISS (a missed target, or errors while measuring), else EXIT_MET."""
    return EXIT_MISSED if any(f.verdict == "MISS" for f in figures) else EXIT_MET


def verdict_line(figures: Sequence[Figure]) -> str:
    judged = [f for f in figures if f.verdict]
    missed = [f.name for f in judged if f.verdict == "MISS"]
    if missed:
        return f"{len(missed)} of {len(judged)} judged figures missed: {'; '.join(missed)} (exit {EXIT_MISSED})"
    if not judged:
        return f"no targets (exit {EXIT_MET})"
    return f"all {len(judged)} target{'s' if len(judged) != 1 else ''} met (exit {EXIT_MET})"


def run_record(
    suite: str, figures: Sequence[Figure], settings: dict[str, Any] | None = None, machine: dict[str, Any] | None = None
) -> dict[str, Any]:
    """What a run records: when, where, with which settings, every figure and the exit code."""
    return {
        "suite": suite,
        "command": f"mistudio bench {suite}",
        "recorded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine or machine_info(),
        "settings": {k: v for k, v in (settings or {}).items()},
        "figures": [f.to_record() for f in figures],
        "exit_code": exit_code(figures),
    }


def finish(suite: str, figures: Sequence[Figure], settings: dict[str, Any] | None = None) -> int:
    """Print the figures table and the verdict, record the run (see RECORD_DIR) and return the exit code."""
    from appliance.commands.bench import records

    print(section("Figures"))
    print(figures_table(figures))
    print("\n" + verdict_line(figures), flush=True)
    code = exit_code(figures)
    if RECORD_DIR is not None:
        path, readme = records.save(RECORD_DIR, run_record(suite, figures, settings))
        progress(f"recorded in {path}" + (f"; refreshed its block in {readme}" if readme else ""))
    return code


def wait_job(client: Any, job_id: str, what: str | None = None) -> dict[str, Any]:
    """Poll a job until it ends; its final state, or BenchError (naming it ``what``) if it did not complete."""
    while (job := client.get(f"/api/jobs/{job_id}").json()["data"])["status"] not in (
        "completed",
        "failed",
        "cancelled",
    ):
        time.sleep(0.5)
    if job["status"] != "completed":
        raise BenchError(f"{what or 'job ' + job_id} {job['status']}: {job['error']}")
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


def train_sae(
    client: Any,
    model: dict[str, Any],
    dataset: dict[str, Any],
    encoder_type: str,
    hyperparameters: dict[str, Any],
    max_samples: int,
    context_length: int,
) -> str:
    """An SAE on layer 2 of ``model``, activations streamed from ``dataset``; its training id."""
    job = start_job(
        client,
        "/api/training/start",
        {
            "model_id": model["id"],
            "dataset_id": dataset["id"],
            "layer": 2,
            "encoder_type": encoder_type,
            "max_samples": max_samples,
            "context_length": context_length,
            "hyperparameters": hyperparameters,
        },
    )
    return job["target"]["id"]


def timed_get(client: Any, url: str, params: dict[str, Any], latencies: list[float], failures: list[str]) -> None:
    """One GET with ``client`` (an httpx.Client): its latency in ms when it answers 200, else the reason
    in ``failures``. A failed request is not a latency (a fast error would flatter the percentile): it is
    counted, and makes the figure a MISS."""
    import httpx

    began = time.perf_counter()
    try:
        response = client.get(url, params=params)
    except httpx.HTTPError as exc:
        failures.append(f"{params}: {type(exc).__name__}: {exc}")
        return
    elapsed = (time.perf_counter() - began) * 1000
    if response.status_code == 200:
        latencies.append(elapsed)
    else:
        failures.append(f"{params}: HTTP {response.status_code} {response.text[:200]}")
