"""``mistudio bench explain``: explanations and their detection and fuzzing scores per minute, against a judge of
known latency, and the local labeller's memory.

The appliance trains a small TopK SAE on its demo model and extracts its features. Then:

- **An OpenAI-compatible endpoint**: a fake judge in this process, on loopback, answers every call after a set
  latency (``--latencies``, default 0, 50 and 200 ms): an explanation for the explainer, a well-formed verdict
  per context for the judges (whether the context holds a marked token: a rule of its own). The explain job
  runs over the ``--features`` best-ranked features at the settings' concurrency (4 features in flight),
  ``redo`` so every run does the whole work. Per latency: explanations and scored features per minute of the
  job's own running time, the calls the judge answered, and the job's time against the ideal
  ``calls x latency / concurrency`` (the time the calls alone take when the job keeps every slot busy; fewer
  slots for a run of fewer features): at 0 ms that ideal is 0 and the figure is the appliance's own time per
  call instead.
- **A local labeller**: a model shaped like an instruction-tuned one (appliance.demo_kit.instruct: a Llama with
  ChatML and its chat template, random weights, ``--labeller`` layers x width, default 2x64) is imported and
  registered, then explains and judges a few features on the worker under ``MISTUDIO_MEMORY_TOTAL_MB``
  (``--memory-mb``, default 8192: an 8 GB board). Its rate is reported; its job's memory plan against the
  worker's measured peak is judged (the plan covers the peak, at most 1.3 times it). Random weights answer
  garbage: its features end "malformed" or "explained", which costs the same calls.

Targets: at latencies of 50 ms and more, job time / ideal < 1.5 (the job keeps its slots busy); the local
labeller's memory plan / peak within 1.0 to 1.3.
"""

from __future__ import annotations

import argparse
import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

from appliance.commands.bench.harness import (
    Appliance,
    BenchError,
    Figure,
    finish,
    kv_lines,
    opening,
    progress,
    start_job,
    train_sae,
    wait_demo,
    wait_job,
)
from appliance.commands.bench.pipeline import PLAN_BAND, Band, memory_of, running_seconds

CONTEXT = 64
TRAIN_STEPS = 300  # at most: a run over fewer samples trains one step per sample
CONCURRENCY = 4
RATIO_TARGET = 1.5
LOCAL_FEATURES = 4
JUDGE_MODEL = "bench-judge"
MARK = re.compile(r"«[^»]+»")


@dataclass
class FakeJudge:
    """An OpenAI-compatible ``/chat/completions`` on loopback that answers after ``latency_s``; it counts the
    calls and the most it had in flight at once."""

    latency_s: float = 0.0
    calls: int = 0
    in_flight: int = 0
    most_in_flight: int = 0
    server: ThreadingHTTPServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def start(self) -> FakeJudge:
        judge = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
                reply = json.dumps(judge.answer(body.get("messages") or [])).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    def answer(self, messages: list[dict[str, str]]) -> dict[str, Any]:
        with self._lock:
            self.calls += 1
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            time.sleep(self.latency_s)
            text = reply_to(messages)
        finally:
            with self._lock:
                self.in_flight -= 1
        return {
            "id": "bench",
            "object": "chat.completion",
            "choices": [{"message": {"role": "assistant", "content": text}}],
        }


def reply_to(messages: list[dict[str, str]]) -> str:
    """The judge's rule: the explainer gets an explanation; a judge gets, per "Example N:" context, 1 when the
    context holds a marked token, else 0 (well formed, so the features are scored; what they score does not
    matter here)."""
    prompt = "\n".join(message.get("content", "") for message in messages)
    contexts = re.findall(r"^Example \d+: (.*)$", prompt, re.M)
    if not contexts:
        return "[EXPLANATION]: words about code and files"
    return json.dumps([1 if MARK.search(text) else 0 for text in contexts])


@dataclass
class Run:
    """One explain job and what it did."""

    name: str
    latency_s: float | None
    job: dict[str, Any]
    judge_calls: int = 0
    most_in_flight: int = 0

    @property
    def result(self) -> dict[str, Any]:
        return self.job.get("result") or {}

    @property
    def seconds(self) -> float | None:
        return running_seconds(self.job)

    def per_minute(self, count: int) -> float | None:
        return 60 * count / self.seconds if self.seconds else None

    @property
    def calls(self) -> int:
        return int(self.result.get("calls") or 0)

    @property
    def slots(self) -> int:
        """Features in flight at once when the job keeps busy: the concurrency, or fewer features."""
        return max(1, min(CONCURRENCY, int(self.result.get("requested") or 1)))

    @property
    def ideal_s(self) -> float | None:
        return None if self.latency_s is None else self.calls * self.latency_s / self.slots


def run_figures(run: Run) -> list[Figure]:
    """Rates of one run, and (an endpoint) its time against the ideal or (local) its memory plan."""
    result = run.result
    failed = result.get("failed") or {}
    failed_text = ", ".join(f"{state} {count}" for state, count in sorted(failed.items())) or "none"
    figures = [
        Figure(
            f"{run.name}: explanations / min",
            run.per_minute(int(result.get("explained") or 0)),
            "/min",
            digits=0,
            note=f"{result.get('requested', 0)} features in {run.seconds or 0:.1f} s; failed: {failed_text}",
        ),
        Figure(
            f"{run.name}: scored features / min",
            run.per_minute(int(result.get("scored") or 0)),
            "/min",
            digits=0,
            note=f"detection + fuzzing; {run.calls} calls ({run.calls / max(1, int(result.get('requested') or 1)):.1f}"
            " per feature)",
        ),
    ]
    if run.latency_s is not None:
        figures.append(_ideal_figure(run))
    else:
        planned, peak, reported = memory_of(run.job)
        low, high = PLAN_BAND
        figures.append(
            Band(
                f"{run.name}: memory plan / peak",
                planned / peak if planned and peak else None,
                "x",
                digits=2,
                target=high,
                low=low,
                high=high,
                errors=0 if reported else 1,
                note=f"plan {planned or 0:,.0f} MB, peak {peak or 0:,.0f} MB (worker RSS)",
            )
        )
    return figures


def _ideal_figure(run: Run) -> Figure:
    assert run.latency_s is not None
    lost = abs(run.judge_calls - run.calls)  # calls the job counted but the judge never saw, or the reverse
    if run.latency_s == 0:
        per_call = 1000 * run.seconds / run.calls * run.slots if run.seconds and run.calls else None
        return Figure(
            f"{run.name}: appliance time per call",
            per_call,
            "ms",
            digits=1,
            errors=lost,
            note=f"job time x features in flight / calls at a 0 ms judge; at most {run.most_in_flight} calls in flight",
        )
    ratio = run.seconds / run.ideal_s if run.seconds and run.ideal_s else None
    return Figure(
        f"{run.name}: job time / ideal",
        ratio,
        "x",
        digits=2,
        target=RATIO_TARGET,
        errors=lost,
        note=f"ideal {run.ideal_s or 0:.1f} s = {run.calls} calls x {1000 * run.latency_s:.0f} ms / {run.slots}; "
        f"at most {run.most_in_flight} calls in flight",
    )


def _sae(client: httpx.Client, samples: int) -> str:
    """A small TopK SAE on the demo model with its features extracted: its training id."""
    dataset, model = wait_demo(client)
    progress("training a TopK SAE (4x, k=16) on layer 2 of the demo model, activations streamed")
    training_id = train_sae(
        client,
        model,
        dataset,
        "topk",
        {"k": 16, "expansion_factor": 4, "batch_size": 256, "total_steps": min(TRAIN_STEPS, samples)},
        max_samples=samples,
        context_length=CONTEXT,
    )
    progress(f"extracting its features over {samples:,} samples")
    start_job(
        client,
        "/api/features/extract",
        {"training_id": training_id, "eval_samples": samples, "top_k_examples": 20, "context_length": CONTEXT},
    )
    return training_id


def _settings(client: httpx.Client, **fields: Any) -> None:
    response = client.put("/api/settings/labeling", json=fields)
    if response.status_code != 200:
        raise BenchError(f"the labelling settings were refused: {response.text[:300]}")


def _explain(client: httpx.Client, training_id: str, features: int) -> dict[str, Any]:
    response = client.post(f"/api/training/{training_id}/features/explain", json={"top": features, "redo": True})
    if response.status_code != 202:
        raise BenchError(f"the explain request was refused: {response.text[:300]}")
    return wait_job(client, response.json()["data"]["job_id"], "the explain job")


def _endpoint_run(client: httpx.Client, training_id: str, features: int, latency_ms: float) -> Run:
    judge = FakeJudge(latency_s=latency_ms / 1000).start()
    try:
        progress(f"explaining and judging {features} features against a judge answering in {latency_ms:g} ms")
        _settings(client, provider="openai", endpoint=judge.url, model=JUDGE_MODEL, concurrency=CONCURRENCY)
        job = _explain(client, training_id, features)
    finally:
        judge.stop()
    return Run(f"endpoint {latency_ms:g} ms", judge.latency_s, job, judge.calls, judge.most_in_flight)


def _local_run(app: Appliance, client: httpx.Client, training_id: str, shape: tuple[int, int]) -> Run:
    from appliance.demo_kit.instruct import build_tiny_instruct

    layers, width = shape
    name = f"instruct-{layers}x{width}"
    progress(f"importing a {layers} x {width} instruct-shaped labeller")
    build_tiny_instruct(app.data_dir / "imports" / name, layers=layers, width=width, heads=max(2, width // 64))
    imported = start_job(client, "/api/models/import", {"path": name, "precision": "fp32"})
    _settings(client, provider="local", local_model_id=imported["target"]["id"])
    progress(f"explaining and judging {LOCAL_FEATURES} features with it on the worker")
    return Run(f"local {layers}x{width}", None, _explain(client, training_id, LOCAL_FEATURES))


def parse_shape(text: str) -> tuple[int, int]:
    try:
        layers, width = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise BenchError(f"--labeller {text!r}: expected LAYERSxWIDTH, e.g. 2x64") from None
    if layers < 1 or width < 16 or width % 16:
        raise BenchError(f"--labeller {text!r}: at least one layer, a width that is a multiple of 16")
    return layers, width


def run(args: argparse.Namespace) -> int:
    opening("explain", args)
    features = int(getattr(args, "features", None) or 24)
    latencies = [float(x) for x in str(getattr(args, "latencies", None) or "0,50,200").split(",")]
    shape = parse_shape(str(getattr(args, "labeller", None) or "2x64"))
    memory_mb = int(getattr(args, "memory_mb", None) or 8192)
    samples = int(getattr(args, "samples", None) or 400)
    print(
        "\n".join(
            kv_lines(
                [
                    ("features", f"{features} per endpoint run ({LOCAL_FEATURES} with the local labeller)"),
                    ("judge latency", ", ".join(f"{x:g} ms" for x in latencies)),
                    ("concurrency", CONCURRENCY),
                    ("labeller", f"{shape[0]} x {shape[1]} Llama with a chat template (random weights)"),
                    ("memory", f"MISTUDIO_MEMORY_TOTAL_MB={memory_mb}"),
                ]
            )
        )
    )
    env = {"MISTUDIO_SEED_DEMO": "1", "MISTUDIO_MEMORY_TOTAL_MB": str(memory_mb), "HF_HUB_OFFLINE": "1"}
    runs: list[Run] = []
    with Appliance(extra_env=env) as app:
        client = httpx.Client(base_url=app.url, timeout=600, headers=app.auth_headers())
        training_id = _sae(client, samples)
        runs.extend(_endpoint_run(client, training_id, features, latency) for latency in latencies)
        runs.append(_local_run(app, client, training_id, shape))
        client.close()
    print(app.exit_summary())
    figures = [figure for one in runs for figure in run_figures(one)]
    settings = {
        "features": features,
        "latencies_ms": latencies,
        "concurrency": CONCURRENCY,
        "labeller": f"{shape[0]}x{shape[1]}",
        "memory_mb": memory_mb,
        "samples": samples,
    }
    return finish("explain", figures, settings)
