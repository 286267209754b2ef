"""``mistudio bench api``: the API's responsiveness on this machine, against the appliance's targets.

Measured on a fresh appliance (API + worker subprocesses, temporary data dir):

1. GET latency (p50/p95/p99) and requests/s of ``/api/health`` and ``/api/jobs`` (with 20 jobs in the
   table) under ``--clients`` concurrent keep-alive clients (closed loop), ``--requests`` per endpoint,
   after a warm-up; plus the same with a single client, which shows the service time without
   queueing. Two kinds of client: a minimal raw HTTP/1.1 one (judged against the target) and httpx
   (one AsyncClient per coroutine, for reference): on a 2-core machine httpx spends ~1.5 ms of CPU
   per request, more than the server, and a single httpx pool shared by 50 coroutines ~4 ms, so
   httpx figures mostly measure httpx.
2. SSE delivery: a raw-socket reader subscribed to ``/api/events?topics=job`` before a selftest with
   ``--events`` steps 20 ms apart is started; latency = receipt time - the worker's ``data.t``.
3. Enqueue-to-start (job ``started_at - created_at``, both written by the system) after ``--idle``
   seconds without traffic, and back to back ("busy") for comparison.
4. VmRSS of the API after start and after the idle period, and of the worker; how long the API took
   to answer after being spawned, and API + worker to be ready.

Floors: none; each figure is judged against the appliance's absolute target. Nothing is ignored: a
failed request is counted (not timed) and makes its row a MISS, and so does any selftest step whose
SSE event is lost or arrives twice.

The client shares the machine's cores with the server, so it is kept cheap: one event loop (uvloop
when installed), raw keep-alive connections for the load, and a hand-rolled SSE reader that parses
only what it needs; httpx serves the few control requests (create jobs, read them).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from appliance.commands.bench.harness import (
    Appliance,
    BenchError,
    CpuMeter,
    Figure,
    finish,
    kv_lines,
    machine_lines,
    percentile,
    progress,
    rss_mb,
    section,
    table,
)

# The appliance's targets.
GET_P95_TARGET_MS = 20.0
SSE_P95_TARGET_MS = 150.0
PICKUP_TARGET_MS = 200.0
IDLE_RSS_TARGET_MB = 80.0

JOBS_IN_TABLE = 20
SSE_DELAY_MS = 20
BUSY_SAMPLES = 10
SERIAL_REQUESTS = 200  # single-client reference run per endpoint
FINAL = ("completed", "failed", "cancelled")
ENDPOINTS = ("/api/health", "/api/jobs")


@dataclass
class Config:
    clients: int = 50
    requests: int = 2000
    idle: float = 60.0
    events: int = 200

    @property
    def idle_samples(self) -> int:
        return 3 if self.idle <= 5 else 2

    @property
    def warmup(self) -> int:
        return max(2 * self.clients, 200)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> "Config":
        cfg = cls(
            clients=int(getattr(args, "clients", 50)),
            requests=int(getattr(args, "requests", 2000)),
            idle=float(getattr(args, "idle", 60.0)),
            events=int(getattr(args, "events", 200)),
        )
        if cfg.clients < 1 or cfg.requests < 1 or cfg.events < 1 or cfg.idle < 0:
            raise BenchError("--clients, --requests and --events must be at least 1, --idle not negative")
        return cfg


@dataclass
class LoadResult:
    path: str
    clients: int
    latencies_ms: list[float]  # of the requests answered 200 only
    wall_s: float
    errors: int
    first_error: str = ""
    cpu: str = ""
    client: str = "raw"

    @property
    def rps(self) -> float:
        return len(self.latencies_ms) / self.wall_s if self.wall_s > 0 else 0.0

    def p(self, q: float) -> float:
        return percentile(self.latencies_ms, q)


@dataclass
class SseResult:
    expected: int
    latencies_ms: list[float]
    wall_s: float
    cpu: str = ""
    steps: list[int] = field(default_factory=list)  # the step of each job.progress event received

    @property
    def lost(self) -> int:
        """Steps 1..expected with no event."""
        return len(set(range(1, self.expected + 1)) - set(self.steps))

    @property
    def duplicated(self) -> int:
        """Events beyond the first for a step (or for a step that does not exist)."""
        return len(self.steps) - len(set(self.steps) & set(range(1, self.expected + 1)))

    @property
    def errors(self) -> int:
        return self.lost + self.duplicated


@dataclass
class Pickup:
    ms: float
    created_at: str
    started_at: str


@dataclass
class Results:
    rss_api_start: float | None = None
    rss_worker_start: float | None = None
    rss_api_idle: list[float | None] = field(default_factory=list)
    rss_api_end: float | None = None
    rss_worker_end: float | None = None
    jobs_in_table: int = 0
    load: list[LoadResult] = field(default_factory=list)
    load_httpx: list[LoadResult] = field(default_factory=list)
    warmup: list[LoadResult] = field(default_factory=list)  # not timed, but its failures count too
    serial: list[LoadResult] = field(default_factory=list)
    sse: SseResult | None = None
    busy: list[Pickup] = field(default_factory=list)
    idle: list[Pickup] = field(default_factory=list)
    api_up_s: float | None = None
    ready_s: float | None = None


# -- HTTP helpers ---------------------------------------------------------------------------------


def _ts(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


async def _post_selftest(client: Any, steps: int, delay_ms: int) -> str:
    response = await client.post("/api/jobs/selftest", json={"steps": steps, "delay_ms": delay_ms})
    if response.status_code != 202:
        raise BenchError(f"POST /api/jobs/selftest answered {response.status_code}: {response.text[:300]}")
    return response.json()["data"]["job_id"]


async def _wait_job(client: Any, job_id: str, timeout: float = 30.0, first_wait: float = 0.25) -> dict[str, Any]:
    """Poll a job until it is final (sparingly: the polls compete with what is measured)."""
    deadline = time.monotonic() + timeout
    await asyncio.sleep(first_wait)
    while True:
        response = await client.get(f"/api/jobs/{job_id}")
        if response.status_code != 200:
            raise BenchError(f"GET /api/jobs/{job_id} answered {response.status_code}: {response.text[:300]}")
        job = response.json()["data"]
        if job["status"] in FINAL:
            if job["status"] != "completed":
                raise BenchError(f"selftest job {job_id} ended {job['status']}: {job.get('error')}")
            return job
        if time.monotonic() > deadline:
            raise BenchError(f"selftest job {job_id} still {job['status']} after {timeout:.0f}s")
        await asyncio.sleep(0.1)


async def _pickup(client: Any) -> Pickup:
    job = await _wait_job(client, await _post_selftest(client, 1, 0))
    return Pickup((_ts(job["started_at"]) - _ts(job["created_at"])) * 1000, job["created_at"], job["started_at"])


class _RawHttp:
    """One keep-alive HTTP/1.1 connection that sends GETs and reads whole answers with a minimum of
    parsing (status, Content-Length or chunked): about a tenth of httpx's CPU per request."""

    def __init__(self, app: Appliance):
        self.app = app
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        extra = "".join(f"{k}: {v}\r\n" for k, v in app.auth_headers().items())
        # Like a browser (and httpx): accept gzip, so large answers come compressed.
        self._head = f"Host: 127.0.0.1:{app.port}\r\nAccept: */*\r\nAccept-Encoding: gzip\r\n{extra}\r\n"

    async def get(self, path: str) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.app.port)
        assert self.reader is not None
        self.writer.write(f"GET {path} HTTP/1.1\r\n{self._head}".encode("latin-1"))
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        length, chunked, close = 0, False, False
        for line in lines[1:]:
            key, _, value = line.partition(b":")
            key = key.strip().lower()
            if key == b"content-length":
                length = int(value)
            elif key == b"transfer-encoding":
                chunked = b"chunked" in value.lower()
            elif key == b"connection":
                close = b"close" in value.lower()
        if chunked:
            parts = []
            while size := int((await self.reader.readuntil(b"\r\n")).split(b";")[0].strip(), 16):
                parts.append((await self.reader.readexactly(size + 2))[:-2])
            await self.reader.readuntil(b"\r\n")
            body = b"".join(parts)
        else:
            body = await self.reader.readexactly(length)
        if close:
            self.close()
        return status, body

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


async def _raw_get(conn: _RawHttp, path: str) -> str:
    status, body = await conn.get(path)
    return "" if status == 200 else f"HTTP {status}: {body[:200]!r}"


async def _httpx_get(client: Any, path: str) -> str:
    response = await client.get(path)
    return "" if response.status_code == 200 else f"HTTP {response.status_code}: {response.text[:200]}"


async def _load(conns: list[Any], get: Any, path: str, total: int) -> LoadResult:
    """``total`` GETs of ``path``, one coroutine per connection, each sending its next request as soon
    as the previous answer is read (closed loop)."""
    latencies: list[float] = []
    remaining = total
    errors = 0
    first_error = ""
    clock = time.perf_counter

    async def one_client(conn: Any) -> None:
        nonlocal remaining, errors, first_error
        while remaining > 0:
            remaining -= 1
            began = clock()
            try:
                problem = await get(conn, path)
            except Exception as exc:  # noqa: BLE001 - counted and reported, not fatal
                problem = f"{type(exc).__name__}: {exc}"
                if isinstance(conn, _RawHttp):
                    conn.close()
            elapsed = (clock() - began) * 1000
            # A failed request is not a latency: a fast error would flatter the percentiles. It is
            # counted, and any error makes the figure a MISS.
            if problem:
                errors += 1
                first_error = first_error or problem
            else:
                latencies.append(elapsed)

    began = clock()
    await asyncio.gather(*(one_client(conn) for conn in conns[:total]))
    result = LoadResult(path, len(conns), latencies, clock() - began, errors, first_error)
    if errors == total:
        raise BenchError(f"every GET {path} failed; first: {first_error}")
    return result


# -- SSE --------------------------------------------------------------------------------------------


class _SseStream:
    """A minimal SSE-over-HTTP/1.1 reader on a raw socket: the receipt time of each event is taken
    when its bytes are read, and only the fields needed are decoded."""

    def __init__(self, app: Appliance, path: str):
        self.app, self.path = app, path
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.chunked = False

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.app.port)
        headers = [
            f"GET {self.path} HTTP/1.1",
            f"Host: 127.0.0.1:{self.app.port}",
            "Accept: text/event-stream",
            "Cache-Control: no-cache",
        ]
        headers += [f"{k}: {v}" for k, v in self.app.auth_headers().items()]
        self.writer.write(("\r\n".join(headers) + "\r\n\r\n").encode("latin-1"))
        await self.writer.drain()
        status_line = await self.reader.readline()
        parts = status_line.split()
        status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
        response_headers: dict[str, str] = {}
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b"\n", b""):
                break
            key, _, value = line.decode("latin-1").partition(":")
            response_headers[key.strip().lower()] = value.strip()
        if status != 200:
            body = await asyncio.wait_for(self.reader.read(500), 2)
            raise BenchError(
                f"GET {self.path} answered {status_line.decode(errors='replace').strip()}: "
                f"{body.decode(errors='replace')}"
            )
        self.chunked = "chunked" in response_headers.get("transfer-encoding", "").lower()

    async def chunks(self) -> AsyncIterator[tuple[float, bytes]]:
        """Yield (receipt time, bytes) as they arrive, undoing chunked transfer encoding."""
        assert self.reader is not None
        now = time.time
        if not self.chunked:
            while data := await self.reader.read(65536):
                yield now(), data
            return
        while True:
            size_line = await self.reader.readline()
            if not size_line:
                return
            size = int(size_line.split(b";")[0].strip() or b"0", 16)
            if size == 0:
                return
            data = await self.reader.readexactly(size + 2)
            yield now(), data[:-2]

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


async def _sse_probe(app: Appliance, client: Any, steps: int) -> SseResult:
    # The job id is the server's to choose, so the stream subscribes to every job topic ("job"
    # matches "job:<id>") before the job exists, and keeps only that job's events.
    stream = _SseStream(app, "/api/events?topics=job")
    await asyncio.wait_for(stream.open(), 10)
    connected = asyncio.Event()
    job: dict[str, str | None] = {"id": None}
    received: list[tuple[float, bytes]] = []  # (receipt time, data of a job.progress event)

    async def read() -> None:
        buffer = b""
        event_type = b""
        data = b""
        async for recv_t, chunk in stream.chunks():
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for raw in lines:
                line = raw.rstrip(b"\r")
                if not line:  # end of an event
                    if event_type == b"job.progress":
                        received.append((recv_t, data))
                    elif event_type == b"job.updated" and data:
                        payload = json.loads(data)
                        status = (payload.get("data") or {}).get("status")
                        if payload.get("job_id") == job["id"] and status in FINAL:
                            if status != "completed":
                                raise BenchError(f"SSE selftest job {job['id']} ended {status}")
                            return
                    event_type = data = b""
                elif line.startswith(b":"):
                    if b"connected" in line:
                        connected.set()
                elif line.startswith(b"event:"):
                    event_type = line[6:].strip()
                elif line.startswith(b"data:"):
                    data = line[5:].lstrip(b" ")
        raise BenchError("the SSE stream ended before the selftest job finished")

    reader = asyncio.create_task(read())
    try:
        await asyncio.wait_for(asyncio.shield(connected.wait()), 10)
        with CpuMeter(app) as cpu:
            began = time.perf_counter()
            job["id"] = await _post_selftest(client, steps, SSE_DELAY_MS)
            await asyncio.wait_for(reader, timeout=30 + steps * SSE_DELAY_MS / 1000 * 5)
            wall = time.perf_counter() - began
    finally:
        reader.cancel()
        stream.close()
    latencies, seen = [], []
    for recv_t, data in received:
        payload = json.loads(data)
        if payload.get("job_id") == job["id"]:
            latencies.append((recv_t - payload["data"]["t"]) * 1000)
            seen.append(int(payload["data"].get("step", 0)))
    return SseResult(steps, latencies, wall, cpu.summary(), seen)


# -- the run ----------------------------------------------------------------------------------------


async def _measure(app: Appliance, cfg: Config) -> Results:
    import httpx

    res = Results(rss_api_start=rss_mb(app.api_pid), rss_worker_start=rss_mb(app.worker_pid))

    def new_client(**kwargs: Any) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=app.url, headers=app.auth_headers(), timeout=30, **kwargs)

    async with new_client() as client:
        progress(f"creating {JOBS_IN_TABLE} selftest jobs (steps=1, delay_ms=0)")
        ids = [await _post_selftest(client, 1, 0) for _ in range(JOBS_IN_TABLE)]
        for job_id in ids:
            await _wait_job(client, job_id, first_wait=0)
        listing = (await client.get("/api/jobs")).json()
        res.jobs_in_table = listing["meta"]["pagination"]["total"]
        await _measure_gets(app, cfg, res, new_client)

        progress(f"SSE: selftest with {cfg.events} steps, {SSE_DELAY_MS} ms apart")
        res.sse = await _sse_probe(app, client, cfg.events)

        progress(f"pickup, busy: {BUSY_SAMPLES} samples back to back")
        for _ in range(BUSY_SAMPLES):
            res.busy.append(await _pickup(client))

    # No connection stays open through the idle waits: nothing but the appliance's own timers runs.
    for i in range(cfg.idle_samples):
        progress(f"pickup after idle: sample {i + 1}/{cfg.idle_samples}, idling {cfg.idle:g} s")
        await asyncio.sleep(cfg.idle)
        res.rss_api_idle.append(rss_mb(app.api_pid))
        async with new_client() as client:
            res.idle.append(await _pickup(client))
    res.rss_api_end = rss_mb(app.api_pid)
    res.rss_worker_end = rss_mb(app.worker_pid)
    return res


async def _measure_gets(app: Appliance, cfg: Config, res: Results, new_client: Callable[..., Any]) -> None:
    """Warm-up, then GET latency under ``cfg.clients`` raw and httpx clients, then one raw client."""
    import httpx

    raw = [_RawHttp(app) for _ in range(cfg.clients)]
    # One httpx client (and pool) per coroutine: a single pool shared by 50 coroutines costs
    # the client ~4 ms of CPU per request on its own (httpcore scans its pool per request).
    per = [new_client(limits=httpx.Limits(max_connections=1, max_keepalive_connections=1)) for _ in range(cfg.clients)]
    try:
        progress(f"warm-up: {cfg.warmup} GETs per endpoint and client kind")
        for path in ENDPOINTS:
            res.warmup.append(await _load(raw, _raw_get, path, cfg.warmup))
            res.warmup.append(await _load(per, _httpx_get, path, cfg.warmup))
        for path in ENDPOINTS:
            for kind, conns, get in (("raw", raw, _raw_get), ("httpx", per, _httpx_get)):
                progress(f"GET {path}: {cfg.requests} requests, {cfg.clients} {kind} clients")
                with CpuMeter(app) as cpu:
                    result = await _load(conns, get, path, cfg.requests)
                result.client, result.cpu = kind, cpu.summary()
                (res.load if kind == "raw" else res.load_httpx).append(result)
        for path in ENDPOINTS:
            progress(f"GET {path}: {SERIAL_REQUESTS} requests, 1 raw client")
            with CpuMeter(app) as cpu:
                result = await _load(raw[:1], _raw_get, path, SERIAL_REQUESTS)
            result.cpu = cpu.summary()
            res.serial.append(result)
    finally:
        for conn in raw:
            conn.close()
        for c in per:
            await c.aclose()


def _run_async(coro: Any) -> Any:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro) if hasattr(uvloop, "run") else asyncio.run(coro)


def _mb(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f} MB"


def _load_rows(results: list[LoadResult]) -> list[list[str]]:
    return [
        [
            f"GET {r.path}",
            f"{r.clients} {r.client}",
            str(len(r.latencies_ms) + r.errors),
            str(r.errors),
            f"{r.rps:.0f}",
            f"{r.p(50):.1f}",
            f"{r.p(95):.1f}",
            f"{r.p(99):.1f}",
            f"{max(r.latencies_ms, default=float('nan')):.1f}",
        ]
        for r in results
    ]


_CLIENT_NOTE = (
    "clients: 'raw' = a minimal keep-alive HTTP/1.1 client (~0.1 ms CPU per request), judged "
    "against the target;\n         'httpx' = one httpx.AsyncClient per coroutine (~1.5 ms CPU per "
    "request, on the same cores as the server), for reference"
)


def _report(app: Appliance, cfg: Config, res: Results) -> str:
    out: list[str] = [section("mistudio bench api"), *machine_lines(), *_report_settings(app, cfg, res)]
    out += _report_gets(cfg, res)
    out += _report_sse(res)
    out += _report_pickup(cfg, res)
    out += _report_memory(res)
    return "\n".join(out)


def _report_settings(app: Appliance, cfg: Config, res: Results) -> list[str]:
    passed = app.passed_settings()
    return kv_lines(
        [
            (
                "settings",
                f"{cfg.clients} clients, {cfg.requests} GETs per endpoint (after {cfg.warmup} warm-up), "
                f"{res.jobs_in_table} jobs in the table",
            ),
            (
                "",
                f"SSE: {cfg.events} events {SSE_DELAY_MS} ms apart; pickup: {BUSY_SAMPLES} busy samples, "
                f"{cfg.idle_samples} samples after {cfg.idle:g} s idle each",
            ),
            ("appliance", f"127.0.0.1:{app.port}, ready {app.started_s:.1f} s after start; {app.exit_summary()}"),
            ("MISTUDIO_*", ", ".join(f"{k}={v}" for k, v in passed.items()) or "defaults"),
        ]
    )


def _report_gets(cfg: Config, res: Results) -> list[str]:
    out: list[str] = []
    headers = ["endpoint", "clients", "requests", "errors", "req/s", "p50 ms", "p95 ms", "p99 ms", "max ms"]
    loaded = [r for pair in zip(res.load, res.load_httpx) for r in pair]
    out.append(section(f"1. GET latency, {cfg.clients} concurrent keep-alive clients (closed loop)"))
    out.append(table(headers, _load_rows(loaded + res.serial), right=range(2, 9)))
    out.append(_CLIENT_NOTE)
    out += [f"  {r.path} ({r.clients} {r.client}): {r.cpu}" for r in loaded + res.serial]
    out += [
        f"  {r.path} ({r.clients} {r.client}): {r.errors} errors, first: {r.first_error}"
        for r in loaded + res.serial
        if r.errors
    ]
    return out


def _report_sse(res: Results) -> list[str]:
    sse = res.sse
    assert sse is not None
    lat = sse.latencies_ms
    return [
        section("2. SSE delivery (receipt time - worker's data.t)"),
        f"events received {len(lat)} for {sse.expected} steps in {sse.wall_s:.1f} s "
        f"({sse.lost} lost, {sse.duplicated} duplicated); "
        f"p50 {percentile(lat, 50):.1f} ms, p95 {percentile(lat, 95):.1f} ms, "
        f"p99 {percentile(lat, 99):.1f} ms, max {max(lat, default=float('nan')):.1f} ms, "
        f"min {min(lat, default=float('nan')):.1f} ms",
        f"  {sse.cpu}",
    ]


def _report_pickup(cfg: Config, res: Results) -> list[str]:
    rows = [["busy", str(i + 1), p.created_at, p.started_at, f"{p.ms:.0f}"] for i, p in enumerate(res.busy)]
    rows += [
        [f"after {cfg.idle:g} s idle", str(i + 1), p.created_at, p.started_at, f"{p.ms:.0f}"]
        for i, p in enumerate(res.idle)
    ]
    busy = [p.ms for p in res.busy]
    idle = [p.ms for p in res.idle]
    return [
        section("3. Enqueue-to-start (started_at - created_at)"),
        table(["when", "#", "created_at", "started_at", "ms"], rows, right=(1, 4)),
        f"busy: p50 {percentile(busy, 50):.0f} ms, max {max(busy):.0f} ms; after idle: max {max(idle):.0f} ms",
    ]


def _report_memory(res: Results) -> list[str]:
    return [section("4. Memory (VmRSS)")] + kv_lines(
        [
            ("API after start", _mb(res.rss_api_start)),
            ("API after idle", ", ".join(_mb(v) for v in res.rss_api_idle)),
            ("API at the end", _mb(res.rss_api_end)),
            ("worker after start", _mb(res.rss_worker_start)),
            ("worker at the end", _mb(res.rss_worker_end)),
        ]
    )


def _figures(cfg: Config, res: Results) -> list[Figure]:
    """The judged and reference figures of a run; any failed request or lost/duplicated SSE event
    makes its figure a MISS (``errors``), whatever the latencies of the rest."""
    return [*_get_figures(cfg, res), _sse_figure(res), *_pickup_and_memory_figures(cfg, res), *_startup_figures(res)]


def _get_figures(cfg: Config, res: Results) -> list[Figure]:
    return [
        *(
            Figure(
                f"GET {r.path} p95 ({cfg.clients} raw clients)",
                r.p(95),
                "ms",
                GET_P95_TARGET_MS,
                errors=r.errors,
                note=f"p50 {r.p(50):.1f} ms, {r.rps:.0f} req/s",
            )
            for r in res.load
        ),
        *(
            Figure(
                f"GET {r.path} p95 ({cfg.clients} httpx clients)",
                r.p(95),
                "ms",
                errors=r.errors,
                note=f"reference; p50 {r.p(50):.1f} ms, {r.rps:.0f} req/s",
            )
            for r in res.load_httpx
        ),
        *(
            Figure(
                f"GET {r.path} p95 (1 raw client)",
                r.p(95),
                "ms",
                errors=r.errors,
                note=f"reference: service time; {r.rps:.0f} req/s",
            )
            for r in res.serial
        ),
        Figure(
            "warm-up GETs",
            sum(len(r.latencies_ms) + r.errors for r in res.warmup),
            "requests",
            digits=0,
            errors=sum(r.errors for r in res.warmup),
            note="not timed; a failure is still a MISS",
        ),
    ]


def _sse_figure(res: Results) -> Figure:
    sse = res.sse
    assert sse is not None
    lat = sse.latencies_ms
    return Figure(
        "SSE delivery p95",
        percentile(lat, 95),
        "ms",
        SSE_P95_TARGET_MS,
        errors=sse.errors,
        note=f"max {max(lat, default=float('nan')):.1f} ms; {len(set(sse.steps))}/{sse.expected} events, "
        f"{sse.lost} lost, {sse.duplicated} duplicated",
    )


def _pickup_and_memory_figures(cfg: Config, res: Results) -> list[Figure]:
    busy = [p.ms for p in res.busy]
    idle = [p.ms for p in res.idle]
    idle_rss = [v for v in res.rss_api_idle if v is not None]
    return [
        Figure(
            f"pickup after {cfg.idle:g} s idle (max)",
            max(idle, default=None),
            "ms",
            PICKUP_TARGET_MS,
            digits=0,
            note=f"{len(idle)} samples; busy max {max(busy, default=float('nan')):.0f} ms",
        ),
        Figure(
            "API RSS after idle",
            max(idle_rss) if idle_rss else None,
            "MB",
            IDLE_RSS_TARGET_MB,
            note=f"after start {_mb(res.rss_api_start)}; worker {_mb(res.rss_worker_end)}",
        ),
    ]


def _startup_figures(res: Results) -> list[Figure]:
    return [
        Figure(
            "API start-up (first answer)",
            res.api_up_s,
            "s",
            digits=1,
            note="from spawning it to its first HTTP answer, polled every 0.1 s",
        ),
        Figure(
            "API + worker start-up (ready)",
            res.ready_s,
            "s",
            digits=1,
            note="both spawned together, until /api/health/ready answers 200",
        ),
    ]


def run(args: argparse.Namespace) -> int:
    cfg = Config.from_args(args)
    try:
        import httpx  # noqa: F401
    except ImportError:
        raise BenchError("the api suite needs httpx (pip install httpx)") from None
    progress(f"starting an appliance ({os.cpu_count()} cores)")
    with Appliance() as app:
        progress(f"ready after {app.started_s:.1f} s on {app.url}")
        results = _run_async(_measure(app, cfg))
        progress("stopping the appliance")
    results.api_up_s, results.ready_s = app.api_up_s, app.started_s
    print(_report(app, cfg, results), flush=True)
    return finish(
        "api",
        _figures(cfg, results),
        settings={
            "clients": cfg.clients,
            "requests": cfg.requests,
            "idle_s": cfg.idle,
            "events": cfg.events,
            **app.passed_settings(),
        },
    )
