"""Test support: a real appliance (API and worker processes) on 127.0.0.1, and an SSE reader."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import httpx

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def bare_env(**variables: str) -> dict[str, str]:
    """An environment with only a system PATH and ``variables``, for a process that must not inherit
    ours; PYTHONPATH passes through where the interpreter's packages are found by it."""
    return {"PATH": "/usr/bin:/bin", **{k: v for k, v in os.environ.items() if k == "PYTHONPATH"}, **variables}


def wait_until(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.02, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def make_webui(root: Path) -> Path:
    """A minimal built UI (index.html + a hashed asset) so static serving is tested without Node."""
    dist = root / "webui-dist"
    (dist / "assets").mkdir(parents=True, exist_ok=True)
    (dist / "index.html").write_text(
        '<!doctype html><html><head><script type="module" src="/assets/app-abc123.js"></script></head>'
        '<body><div id="root">MechInterp Studio</div></body></html>'
    )
    (dist / "assets" / "app-abc123.js").write_text("console.log('app');\n" * 200)
    return dist


@dataclass
class Appliance:
    data_dir: Path
    port: int
    extra_env: dict[str, str] = field(default_factory=dict)
    api: subprocess.Popen | None = None
    worker: subprocess.Popen | None = None
    logs: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MISTUDIO_")}
        env.update(
            {
                "MISTUDIO_DATA_DIR": str(self.data_dir),
                "MISTUDIO_HOST": "127.0.0.1",
                "MISTUDIO_PORT": str(self.port),
                "MISTUDIO_TORCH_THREADS": "1",
                "MISTUDIO_SSE_HEARTBEAT_S": "1",
                # Tests that want the demo dataset ask for it; elsewhere its seeding job would share the lane.
                "MISTUDIO_SEED_DEMO": "0",
                "PYTHONUNBUFFERED": "1",
            }
        )
        env.update(self.extra_env)
        return env

    def _spawn(self, what: str) -> subprocess.Popen:
        assert self.logs is not None
        log = open(self.logs / f"{what}.log", "ab")
        return subprocess.Popen(
            [sys.executable, "-m", "appliance", what],
            env=self.env,
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def start_api(self) -> None:
        self.api = self._spawn("serve")
        wait_until(self._live, timeout=20, what="the API to answer")

    def _live(self) -> bool:
        if self.api is not None and self.api.poll() is not None:
            raise AssertionError(f"API exited with {self.api.returncode}:\n{self.log('serve')}")
        try:
            return httpx.get(self.url + "/api/health/live", timeout=1, headers=self.auth_headers()).status_code == 200
        except httpx.HTTPError:
            return False

    def auth_headers(self) -> dict[str, str]:
        token = self.extra_env.get("MISTUDIO_TOKEN")
        return {"Authorization": f"Bearer {token}"} if token else {}

    def start_worker(self, wait: bool = True) -> None:
        self.worker = self._spawn("worker")
        if wait:
            wait_until(self._worker_ready, timeout=30, what="the worker heartbeat")

    def _worker_ready(self) -> bool:
        if self.worker is not None and self.worker.poll() is not None:
            raise AssertionError(f"worker exited with {self.worker.returncode}:\n{self.log('worker')}")
        import sqlite3

        db = self.data_dir / "mistudio.db"
        if not db.exists():
            return False
        conn = sqlite3.connect(db)
        try:
            row = conn.execute(
                "SELECT heartbeat_at FROM workers WHERE pid = ? AND stopped_at IS NULL", (self.worker.pid,)
            ).fetchone()
        except sqlite3.OperationalError:
            return False
        finally:
            conn.close()
        # The consumer is polling once the worker row exists and reconciliation is done.
        return row is not None

    def log(self, what: str) -> str:
        path = self.logs / f"{what}.log" if self.logs else None
        return path.read_text(errors="replace")[-4000:] if path and path.exists() else ""

    def stop_proc(self, proc: subprocess.Popen | None, sig: int = signal.SIGTERM, timeout: float = 20) -> float:
        """Signal a process and wait; returns how long it took to exit."""
        if proc is None or proc.poll() is not None:
            return 0.0
        started = time.monotonic()
        proc.send_signal(sig)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise AssertionError(f"process {proc.args} did not stop within {timeout}s after {sig}")
        return time.monotonic() - started

    def stop(self) -> None:
        self.stop_proc(self.api)
        self.stop_proc(self.worker)

    # -- API helpers --------------------------------------------------------------------------
    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=10, headers=self.auth_headers())

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        with self.client() as client:
            return client.get(path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        with self.client() as client:
            return client.post(path, **kwargs)

    def selftest(self, **params: Any) -> str:
        response = self.post("/api/jobs/selftest", json=params)
        assert response.status_code == 202, response.text
        return response.json()["data"]["job_id"]

    def job(self, job_id: str) -> dict[str, Any]:
        response = self.get(f"/api/jobs/{job_id}")
        assert response.status_code == 200, response.text
        return response.json()["data"]

    def wait_status(self, job_id: str, *statuses: str, timeout: float = 20) -> dict[str, Any]:
        return wait_until(
            lambda: (job := self.job(job_id))["status"] in statuses and job,
            timeout=timeout,
            what=f"job {job_id} to reach {statuses}",
        )

    def finished(self, response: httpx.Response, timeout: float = 600) -> dict[str, Any]:
        """The job a job-starting request was accepted for (202), once it completed or failed."""
        assert response.status_code == 202, response.text
        return self.wait_status(response.json()["data"]["job_id"], "completed", "failed", timeout=timeout)

    def completed(self, response: httpx.Response, timeout: float = 600) -> dict[str, Any]:
        """As ``finished``, and the job must have completed."""
        job = self.finished(response, timeout)
        assert job["status"] == "completed", job["error"]
        return job


class SSEReader:
    """Reads an SSE stream in a thread, keeping parsed events (and comments/retry) in order."""

    def __init__(self, url: str, headers: dict[str, str] | None = None):
        self.url = url
        self.headers = headers or {}
        self.events: list[dict[str, Any]] = []
        self.comments: list[str] = []
        self.retry: int | None = None
        self.status: int | None = None
        self.ended = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.error: BaseException | None = None

    def __enter__(self) -> "SSEReader":
        self._thread.start()
        wait_until(lambda: self.status is not None or self.ended.is_set(), timeout=10, what="SSE connection")
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        try:
            with httpx.Client(timeout=httpx.Timeout(10, read=None)) as client:
                with client.stream("GET", self.url, headers=self.headers) as response:
                    self.status = response.status_code
                    if response.status_code != 200:
                        response.read()
                        self.body = response.text
                        return
                    current: dict[str, Any] = {}
                    for line in response.iter_lines():
                        if self._stop.is_set():
                            return
                        if line == "":
                            if "data" in current and current.get("event"):
                                current["payload"] = json.loads(current["data"])
                                self.events.append(current)
                            current = {}
                        elif line.startswith(":"):
                            self.comments.append(line[1:].strip())
                        else:
                            key, _, value = line.partition(":")
                            value = value[1:] if value.startswith(" ") else value
                            if key == "retry":
                                self.retry = int(value)
                            elif key == "id":
                                current["id"] = int(value)
                            elif key in ("event", "data"):
                                current[key] = value
        except httpx.HTTPError as exc:
            if not self._stop.is_set():
                self.error = exc
        finally:
            self.ended.set()

    def ids(self) -> list[int]:
        """Ids of stored events (ephemeral ones such as system.metrics have none)."""
        return [event["id"] for event in self.events if "id" in event]

    def wait_for(self, predicate: Callable[[list[dict[str, Any]]], bool], timeout: float = 20) -> None:
        wait_until(lambda: predicate(self.events), timeout=timeout, what="SSE events")


def job_finished(job_id: str) -> Callable[[list[dict[str, Any]]], bool]:
    def done(events: list[dict[str, Any]]) -> bool:
        return any(
            e["event"] == "job.updated"
            and e["payload"]["job_id"] == job_id
            and e["payload"]["data"]["status"] in ("completed", "failed", "cancelled")
            for e in events
        )

    return done


def appliance_at(tmp: Path, env: dict[str, str] | None = None) -> Appliance:
    """An appliance (not started) whose data, logs and built UI live in ``tmp``."""
    logs = tmp / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    extra = {"MISTUDIO_WEBUI_DIR": str(make_webui(tmp))}
    extra.update(env or {})
    return Appliance(data_dir=tmp / "data", port=free_port(), extra_env=extra, logs=logs)


def started(app: "Appliance") -> Iterator["Appliance"]:
    """API and worker running for the duration of a fixture (``yield from started(app)``)."""
    app.start_api()
    app.start_worker()
    try:
        yield app
    finally:
        app.stop()


def demo_resource(app: "Appliance", kind: str) -> dict[str, Any] | None:
    """The demo dataset or model (``kind``: datasets, models) once it is ready."""
    found = [x for x in app.get(f"/api/{kind}").json()["data"] if x["source"] == "demo"]
    return found[0] if found and found[0]["status"] == "ready" else None


def demo_kit(app: "Appliance", timeout: float = 240) -> tuple[dict[str, Any], dict[str, Any]]:
    """(model, dataset) of the demo kit, once the appliance has built both."""
    wait_until(
        lambda: demo_resource(app, "datasets") and demo_resource(app, "models"), timeout=timeout, what="the demo kit"
    )
    return demo_resource(app, "models"), demo_resource(app, "datasets")


def downloaded(app: Appliance, kind: str, timeout: float, **body: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """(job, resource) of a download (``kind``: datasets or models), once the job completed or failed."""
    job = app.finished(app.post(f"/api/{kind}/download", json=body), timeout=timeout)
    return job, app.get(f"/api/{kind}/{job['target']['id']}").json()["data"]


def started_demo(tmp_path_factory: Any, name: str, **env: str) -> Iterator[Appliance]:
    """A module's running appliance, in its own folder, that seeds the demo kit (``yield from`` in a fixture)."""
    yield from started(appliance_at(tmp_path_factory.mktemp(name), {"MISTUDIO_SEED_DEMO": "1", **env}))


def demo_activations(app: Appliance, layer: int, **body: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """(job, activation set): the demo model's ``layer`` over the demo dataset, extracted with ``body``'s fields."""
    model, dataset = demo_kit(app)
    job = app.completed(
        app.post(
            f"/api/models/{model['id']}/extract-activations",
            json={"dataset_id": dataset["id"], "layers": [layer], **body},
        ),
        timeout=300,
    )
    return job, app.get(f"/api/activations/{job['target']['id']}").json()["data"]


def demo_sae(
    app: Appliance,
    layer: int,
    encoder_type: str,
    *,
    max_samples: int,
    seed: int,
    extraction: dict[str, Any],
    **hyperparameters: Any,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(training job, feature-extraction job): a small SAE (4x, batches of 256, learning rate 1e-3 unless
    ``hyperparameters`` say otherwise) trained on the demo kit, then its features extracted with
    ``extraction``'s fields; both over 64-token contexts."""
    model, dataset = demo_kit(app)
    body = {
        "model_id": model["id"],
        "dataset_id": dataset["id"],
        "layer": layer,
        "encoder_type": encoder_type,
        "max_samples": max_samples,
        "context_length": 64,
        "seed": seed,
        "hyperparameters": {"expansion_factor": 4, "batch_size": 256, "learning_rate": 1e-3, **hyperparameters},
    }
    trained = app.completed(app.post("/api/training/start", json=body))
    body = {"training_id": trained["target"]["id"], "context_length": 64, **extraction}
    return trained, app.completed(app.post("/api/features/extract", json=body))


def json_post_server(answer: Callable[[str, dict[str, str], Any], tuple[int, Any]]):
    """An HTTP server on 127.0.0.1 (a fake upstream such as an OpenAI-compatible endpoint) that answers
    every POST with ``answer(path, headers, json_body) -> (status, json_answer)``. Call ``shutdown()``
    when done; ``server_address[1]`` is its port."""
    from http.server import BaseHTTPRequestHandler, HTTPServer

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])) or b"null")
            status, reply = answer(self.path, dict(self.headers), body)
            data = json.dumps(reply).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


class ModelSpy:
    """Records what the worker's loader (appliance.pipeline.models.loading.load) loads, and inside ``watching()`` the
    names of those models' modules as they run: to check that a bench floor loads like the worker and
    stops where the job stops."""

    def __init__(self, monkeypatch: Any):
        import appliance.pipeline.models.loading as models

        self.loads: list[tuple[tuple, dict, Any]] = []
        self.ran: list[str] = []
        self._names: dict[int, str] = {}
        real_load = models.load

        def spy_load(*args: Any, **kwargs: Any) -> Any:
            model = real_load(*args, **kwargs)
            self.loads.append((args, kwargs, model))
            self._names.update({id(m): n for n, m in model.named_modules()})
            return model

        monkeypatch.setattr(models, "load", spy_load)

    @contextmanager
    def watching(self) -> Iterator[None]:
        import torch

        hook = torch.nn.modules.module.register_module_forward_pre_hook(
            lambda module, _args: self.ran.append(self._names[id(module)]) if id(module) in self._names else None
        )
        try:
            yield
        finally:
            hook.remove()

    def assert_stopped_after(self, layer: int, times: int) -> None:
        """Blocks 0..layer ran, block ``layer`` ``times`` times, and nothing after it (no later block,
        final norm or LM head). GPT-2 module names."""
        blocks = {n for n in self.ran if n.startswith("transformer.h.") and n.count(".") == 2}
        assert blocks == {f"transformer.h.{i}" for i in range(layer + 1)}
        assert self.ran.count(f"transformer.h.{layer}") == times
        assert not any(n.startswith(("transformer.ln_f", "lm_head")) for n in self.ran), sorted(set(self.ran))
