"""``mistudio bench pipeline``: the whole pipeline on a GPT-2-small-shaped model under a memory budget.

The bench builds the model itself (``GPT2Config`` with ``--shape`` layers x width, default 12 x 768;
random weights: it measures mechanics, speed and memory, not what a model knows; the demo tokenizer and
its 4,096-token vocabulary), writes it to the throw-away appliance's imports folder and runs every stage
through the API, with ``MISTUDIO_MEMORY_TOTAL_MB`` set to ``--memory-mb`` (default 8192: an Orin Nano
8 GB): import, activation extraction, SAE training from the extracted set, SAE training streamed from
the model, the feature pass and steering. Per stage it prints:

- throughput against its floor, measured in the same run on the same machine: extraction vs the job's
  own batches through the worker's loader stopped after the same block (``bench extraction``'s floor);
  training vs the five bare matmuls of a dense step at the same shape (``bench training``'s floor); the
  streamed training vs one forward and one bare step per trained activation; the feature pass vs
  forward + encode of its own batches (``bench features``' floor); steered vs unsteered generation with
  the trained SAE (``bench steering``'s pairing);
- planned vs peak memory, from the job's ``memory_planned_mb`` and ``memory_peak_mb``; goal: the plan
  covers the peak and is at most 1.3 times it;
- cancel latency: the stage is started again, larger, and cancelled once its progress moved past its
  first report (its loop runs, not only its set-up; steering: once generation is under way), or after
  ``CANCEL_FALLBACK_S`` of running without any progress; timed from the cancel POST to the job's final
  status, polled every ``POLL_S``;
- time to first progress: from the POST to the first progress above 0 %, or the first message that
  counts "N of M" (a job that completes between two polls counts its end).

Wall-clock figures belong here, not in tests. With CUDA present it also estimates how long the
appliance's default SAE on GPT-2-small takes on an Orin Nano (``appliance.commands.bench.orin``, where
the assumptions are written). The defaults keep a CPU run near ten minutes; ``--full`` is a bigger run.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
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
    rss_mb,
    section,
    table,
    wait_demo,
)
from appliance.commands.bench.orin import Measured, estimate_figures

VOCAB = 4096  # the demo tokenizer's
POLL_S = 0.1
STAGE_TIMEOUT_S = 3600.0
CANCEL_FALLBACK_S = 30.0  # a stage that reports no progress for this long after it runs is cancelled anyway
CANCEL_TARGET_S = 5.0
FIRST_PROGRESS_TARGET_S = 10.0
PLAN_BAND = (1.0, 1.3)  # plan / peak: the plan covers the peak, without reserving much more
MEMORY_FIELDS = ("memory_planned_mb", "memory_peak_mb")
PROMPT = "Return the number of items in the container, counting"
FINAL = ("completed", "failed", "cancelled")
COUNT = re.compile(r"\b(\d[\d,]*) of \d")


@dataclass(frozen=True)
class Plan:
    """What the bench asks for; the defaults are sized for a CPU run of about ten minutes."""

    layers: int = 12
    width: int = 768
    memory_mb: int = 8192
    precision: str = "fp32"
    context: int = 64
    samples: int = 64  # extracted, and the set the first training reads
    expansion: int = 4
    k: int = 32
    batch: int = 512
    steps: int = 30
    stream_samples: int = 128
    stream_batch: int = 256
    stream_steps: int = 20
    buffer_tokens: int = 8192  # the streamed training's shuffle buffer (MISTUDIO_STREAM_BUFFER_TOKENS)
    feature_samples: int = 32
    steer_tokens: int = 32

    @property
    def layer(self) -> int:
        return self.layers // 2

    @property
    def d_sae(self) -> int:
        return self.expansion * self.width

    @property
    def heads(self) -> int:
        return max(1, self.width // 64)


FULL = dict(
    context=128,
    samples=512,
    expansion=8,
    batch=1024,
    steps=200,
    stream_samples=2048,
    stream_batch=1024,
    stream_steps=100,
    buffer_tokens=65536,
    feature_samples=256,
    steer_tokens=64,
)


def plan_from(args: argparse.Namespace, cuda: bool = False) -> Plan:
    """The plan the command line asks for: ``--shape LxW``, ``--memory-mb``, ``--full``, ``--samples``."""
    shape = str(getattr(args, "shape", None) or "12x768")
    try:
        layers, width = (int(part) for part in shape.lower().split("x"))
    except ValueError:
        raise BenchError(f"--shape {shape!r}: expected LAYERSxWIDTH, e.g. 12x768") from None
    if layers < 2 or width < 64 or width % 64:
        raise BenchError(f"--shape {shape!r}: at least 2 layers, and a width that is a multiple of 64")
    changes: dict[str, Any] = dict(FULL) if getattr(args, "full", False) else {}
    if getattr(args, "samples", None):
        changes["samples"] = int(args.samples)
    memory = getattr(args, "memory_mb", None)
    # bf16 on a GPU, as a board runs a model; fp32 on a CPU, where half precision is slower.
    return Plan(
        layers=layers,
        width=width,
        memory_mb=int(memory) if memory else 8192,
        precision="bf16" if cuda else "fp32",
        **changes,
    )


# -- one stage's measurements ---------------------------------------------------------------------


@dataclass
class Stage:
    name: str
    job: dict[str, Any] | None = None
    first_progress_s: float | None = None
    rss_peak_mb: float | None = None  # the worker's resident set, sampled while the job ran
    rate: float | None = None
    floor: float | None = None
    unit: str = "tok/s"
    floor_note: str = ""
    ratio_target: float | None = None  # judged: rate / floor above it
    cancel_s: float | None = None
    cancel_note: str = ""
    errors: list[str] = field(default_factory=list)

    @property
    def ratio(self) -> float | None:
        return self.rate / self.floor if self.rate and self.floor else None


@dataclass
class Followed:
    """How a job went, as the bench saw it from the API."""

    job: dict[str, Any]
    first_progress_s: float | None  # from the POST
    rss_peak_mb: float | None
    cancel_s: float | None = None  # from the cancel POST to the final status
    cancel_note: str = ""


def post_job(client: httpx.Client, path: str, body: dict[str, Any]) -> tuple[str, float]:
    """POST a request that starts a job: (its id, when it was posted); BenchError unless it was accepted."""
    posted = time.perf_counter()
    response = client.post(path, json=body)
    if response.status_code != 202:
        raise BenchError(f"POST {path}: HTTP {response.status_code} {response.text[:300]}")
    return response.json()["data"]["job_id"], posted


def counted(message: str) -> int:
    """N of a message that counts "N of M ..." (samples, steps, tokens in a buffer being filled), else 0."""
    found = COUNT.search(message)
    return int(found[1].replace(",", "")) if found else 0


def moved(job: dict[str, Any]) -> bool:
    """The job reports progress: a fraction above 0, or a count under way (a streamed training fills its
    first buffer at 0 %, saying how many tokens it has)."""
    return float(job.get("progress") or 0.0) > 0.0 or counted(job["message"]) > 0


def advanced(job: dict[str, Any], at_first: dict[str, Any]) -> bool:
    """Past its first progress report: the stage's loop runs, not only its set-up (loading the model)."""
    return moved(job) and (job["progress"] > at_first["progress"] or job["message"] != at_first["message"])


def _cancel_reason(
    job: dict[str, Any], at_first: dict[str, Any] | None, running_s: float, ready: Callable[..., bool]
) -> str:
    """Why to cancel now ("" for not yet): the job advanced past its first progress, or ran
    ``CANCEL_FALLBACK_S`` without any."""
    if at_first is not None and ready(job, at_first):
        return f"at {100 * job['progress']:.0f}%: {job['message']}"
    if at_first is None and running_s > CANCEL_FALLBACK_S:
        return f"with no progress after {running_s:.0f} s running: {job['message']}"
    return ""


def follow(
    client: httpx.Client,
    job_id: str,
    posted: float,
    worker_pid: int | None,
    cancel: bool = False,
    made_progress: Callable[[dict[str, Any]], bool] = moved,
    ready: Callable[..., bool] = advanced,
) -> Followed:
    """Poll the job to its end, noting its first progress (a job that completes between two polls counts
    its end) and the worker's peak RSS; with ``cancel``, POST its cancel once ``_cancel_reason`` gives one
    and time it."""
    first: float | None = None
    at_first: dict[str, Any] | None = None
    running_since: float | None = None
    cancelled_at: float | None = None
    note = ""
    peak: float | None = None
    deadline = time.monotonic() + STAGE_TIMEOUT_S
    while True:
        job = client.get(f"/api/jobs/{job_id}").json()["data"]
        now = time.perf_counter()
        if worker_pid is not None and (rss := rss_mb(worker_pid)) is not None:
            peak = max(peak or 0.0, rss)
        if job["status"] in FINAL:
            first = now - posted if first is None and job["status"] == "completed" else first
            break
        if first is None and made_progress(job):
            first, at_first = now - posted, job
        if running_since is None and job["status"] == "running":
            running_since = now
        if cancel and cancelled_at is None and running_since is not None:
            note = _cancel_reason(job, at_first, now - running_since, ready)
            if note:
                cancelled_at = time.perf_counter()
                client.post(f"/api/jobs/{job_id}/cancel")
        if time.monotonic() > deadline:
            raise BenchError(f"job {job_id} did not end within {STAGE_TIMEOUT_S:.0f} s")
        time.sleep(POLL_S)
    latency = time.perf_counter() - cancelled_at if cancelled_at is not None else None
    return Followed(job, first, peak, latency, note)


def run_stage(
    client: httpx.Client, pid: int | None, stage: Stage, path: str, body: dict[str, Any], **kw: Any
) -> dict[str, Any]:
    """Run one job to completion into ``stage`` (``pid``: the worker's, whose RSS is sampled); the job, or
    BenchError if it did not complete."""
    progress(f"{stage.name}: running")
    job_id, posted = post_job(client, path, body)
    seen = follow(client, job_id, posted, pid, **kw)
    stage.job, stage.first_progress_s, stage.rss_peak_mb = seen.job, seen.first_progress_s, seen.rss_peak_mb
    if seen.job["status"] != "completed":
        raise BenchError(f"{stage.name}: job {job_id} {seen.job['status']}: {seen.job.get('error')}")
    return seen.job


def cancel_stage(
    client: httpx.Client, pid: int | None, stage: Stage, path: str, body: dict[str, Any], **kw: Any
) -> None:
    """Start the stage again and cancel it once it has made progress; a job that ends otherwise than
    cancelled is an error of the figure."""
    progress(f"{stage.name}: started again, to be cancelled")
    try:
        job_id, posted = post_job(client, path, body)
        seen = follow(client, job_id, posted, pid, cancel=True, **kw)
    except BenchError as exc:
        stage.errors.append(f"cancel run: {exc}")
        return
    stage.cancel_s, stage.cancel_note = seen.cancel_s, seen.cancel_note
    if seen.job["status"] != "cancelled":
        stage.errors.append(f"cancel run: job {job_id} ended {seen.job['status']}, not cancelled")


def memory_of(job: dict[str, Any] | None) -> tuple[float | None, float | None, bool]:
    """(planned MB, peak MB, whether the appliance reports them at all): the job's own fields, or its
    result's."""
    for source in (job or {}, (job or {}).get("result") or {}):
        if isinstance(source, dict) and any(name in source for name in MEMORY_FIELDS):
            return source.get("memory_planned_mb"), source.get("memory_peak_mb"), True
    return None, None, False


def running_seconds(job: dict[str, Any] | None) -> float | None:
    """From the job's start to its end, by its own timestamps."""
    if not job or not job.get("started_at") or not job.get("finished_at"):
        return None
    began, ended = (datetime.fromisoformat(job[k].replace("Z", "+00:00")) for k in ("started_at", "finished_at"))
    return (ended - began).total_seconds()


# -- floors, measured here ------------------------------------------------------------------------


def _best(fn: Callable[[], object], repeats: int, synchronize: Callable[[], None]) -> float:
    fn()  # warm-up: allocator and kernels
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        fn()
        synchronize()
        times.append(time.perf_counter() - began)
    return min(times)


def _synchronizer(device: Any) -> Callable[[], None]:
    import torch

    return torch.cuda.synchronize if device.type == "cuda" else (lambda: None)


def bare_step_rate(d_in: int, d_sae: int, batch: int, repeats: int) -> float:
    """Activations/s of the five matmuls of a dense SAE step (``bench training``'s floor), on the worker's
    device, under the bf16 autocast the training uses on a GPU that has it."""
    import contextlib

    import torch

    from appliance.pipeline.models.loading import device as default_device

    on = torch.device(default_device())
    torch.manual_seed(0)
    x, g = torch.randn(batch, d_in, device=on), torch.randn(batch, d_in, device=on)
    W_enc = torch.randn(d_in, d_sae, device=on) / d_in**0.5
    W_dec = torch.randn(d_sae, d_in, device=on) / d_sae**0.5
    amp = on.type == "cuda" and torch.cuda.is_bf16_supported()

    def bare() -> None:
        with torch.autocast("cuda", torch.bfloat16) if amp else contextlib.nullcontext():
            z = x @ W_enc
            _ = z @ W_dec
            dz = g @ W_dec.T
            _ = z.T @ g
            _ = x.T @ dz

    return batch / _best(bare, repeats, _synchronizer(on))


def matmul_tflops(repeats: int, size: int = 8192) -> float:
    """This GPU's bf16 matmul rate in TFLOP/s, measured on one large square product."""
    import torch

    a = torch.randn(size, size, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(size, size, device="cuda", dtype=torch.bfloat16)
    return 2 * size**3 / _best(lambda: a @ b, repeats, torch.cuda.synchronize) / 1e12


def extraction_floor(job: dict[str, Any], data_dir: Path) -> float:
    """Tokens/s of ``bench extraction``'s floor over this job's batches."""
    from appliance.commands.bench import extraction

    params = extraction._params(job)
    seconds, tokens = extraction._floor(params, extraction._batches(params, data_dir))
    return tokens / seconds


def features_floor(job: dict[str, Any], data_dir: Path) -> float:
    """Tokens/s of forward + encode over the feature pass's own batches (``bench features``' floor)."""
    from appliance.commands.bench.features import _Sides
    from appliance.pipeline.activations.extract import Capture
    from appliance.pipeline.features.extract import encode_batch

    sides = _Sides(job, data_dir)
    capture = Capture(sides.model, [sides.params.hook_point])
    name = sides.params.hook_point.name
    live = [[ids for ids in batch if ids] for _, batch in sides.batches]
    try:
        encode_batch(capture, sides.sae, name, live[0])  # warm-up
        sides._synchronize()
        began = time.perf_counter()
        tokens = sum(encode_batch(capture, sides.sae, name, batch)[0].shape[0] for batch in live if batch)
        sides._synchronize()
        return tokens / (time.perf_counter() - began)
    finally:
        capture.close()


def _ms_per_token(model: Any, prompt: list[int], intervention: Any, tokens: int) -> float:
    """ms per generated token of one greedy generation (the steering suite's measure)."""
    from appliance.commands.bench.steering import _run_once

    return _run_once(model, prompt, intervention, tokens)


def steering_pair(job: dict[str, Any], data_dir: Path, feature: int, tokens: int, repeats: int) -> tuple[float, float]:
    """(unsteered, steered) ms per token, greedy, with the trained SAE adding one feature where the job
    steers; the sides alternate and each keeps its best run (as ``bench steering`` pairs them), the
    unsteered one with no hook attached at all."""
    import torch

    from appliance.data.layout import DataLayout
    from appliance.pipeline.models.loading import load
    from appliance.pipeline.sae.io.saelens import load_folder
    from appliance.pipeline.steering.generate import Intervention, SteeredFeature

    params = job["params"]
    model = load(params["model_path"], params["precision"])
    first = next(model.parameters())
    sae, _ = load_folder(DataLayout(data_dir).export(params["training_id"]))
    sae = sae.to(first.device)
    module = dict(model.named_modules())[params["target_module"]]
    steer = Intervention(sae, [SteeredFeature(feature, 2.0, "add", 3.0)], False, False, first.device, first.dtype)
    bare = Intervention(sae, [], False, False, first.device, first.dtype)
    prompt = [int(t) for t in torch.randint(1, VOCAB, (16,), generator=torch.Generator().manual_seed(1))]
    _ms_per_token(model, prompt, bare, tokens)  # warm-up
    unsteered, steered = [], []
    for _ in range(repeats):
        unsteered.append(_ms_per_token(model, prompt, bare, tokens))
        handle = steer.attach(module)
        try:
            steered.append(_ms_per_token(model, prompt, steer, tokens))
        finally:
            handle.remove()
    return min(unsteered), min(steered)


# -- the stages -----------------------------------------------------------------------------------


def build_model(folder: Path, plan: Plan) -> int:
    """A GPT-2-shaped model with random weights and the demo tokenizer, saved as a model folder; its
    parameter count."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from appliance.demo_kit import MODEL_DIR

    torch.manual_seed(0)
    config = GPT2Config(
        n_layer=plan.layers,
        n_embd=plan.width,
        n_head=plan.heads,
        vocab_size=VOCAB,
        n_positions=1024,
        bos_token_id=0,
        eos_token_id=0,
        pad_token_id=0,
    )
    model = GPT2LMHeadModel(config).eval()
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy2(MODEL_DIR / name, folder / name)
    return sum(p.numel() for p in model.parameters())


def import_stage(client: httpx.Client, app: Appliance, plan: Plan) -> tuple[Stage, dict[str, Any]]:
    """The model built here, imported from the appliance's imports folder: the stage, and the model."""
    stage = Stage("import", unit="")
    folder = app.data_dir / "imports" / f"gpt2-{plan.layers}x{plan.width}"
    progress(f"building a {plan.layers} x {plan.width} GPT-2-shaped model in {folder}")
    build_model(folder, plan)
    body = {"path": folder.name, "precision": plan.precision, "name": folder.name}
    job = run_stage(client, app.worker_pid, stage, "/api/models/import", body)
    model_id = job["target"]["id"] if job.get("target") else job["result"]["model_id"]
    return stage, client.get(f"/api/models/{model_id}").json()["data"]


def extraction_stage(
    client: httpx.Client, app: Appliance, plan: Plan, model: dict[str, Any], dataset: dict[str, Any]
) -> tuple[Stage, dict[str, Any]]:
    """The layer's residual stream over ``plan.samples`` samples, against ``bench extraction``'s floor."""
    stage = Stage("extraction", ratio_target=0.9, floor_note="same batches, worker's loader, stop hook")
    path = f"/api/models/{model['id']}/extract-activations"
    body = {
        "dataset_id": dataset["id"],
        "layers": [plan.layer],
        "hook_types": ["residual"],
        "batch_size": 16,
        "max_samples": plan.samples,
        "context_length": plan.context,
    }
    job = run_stage(client, app.worker_pid, stage, path, body)
    stage.rate = job["result"]["tokens_per_second"]
    progress("extraction: the floor, here")
    stage.floor = extraction_floor(job, app.data_dir)
    cancel_stage(client, app.worker_pid, stage, path, {**body, "max_samples": 16 * plan.samples})
    return stage, job


def topk_hyperparameters(plan: Plan, batch: int, steps: int, logs: int) -> dict[str, Any]:
    """The bench's TopK SAE for ``steps`` steps of ``batch``, with a 10 % warm-up and ``logs`` metric rows."""
    return {
        "d_sae": plan.d_sae,
        "k": plan.k,
        "batch_size": batch,
        "total_steps": steps,
        "warmup_steps": max(1, steps // 10),
        "log_every": max(1, steps // logs),
    }


def training_stage(
    client: httpx.Client, app: Appliance, plan: Plan, activation_id: str, repeats: int
) -> tuple[Stage, dict[str, Any]]:
    """A TopK SAE trained from the extracted set, against the bare matmuls of a dense step."""
    stage = Stage("training", unit="act/s", floor_note=f"bare matmuls {plan.width}x{plan.d_sae}, batch {plan.batch}")
    hyperparameters = topk_hyperparameters(plan, plan.batch, plan.steps, logs=6)
    body = {
        "activation_id": activation_id,
        "layer": plan.layer,
        "hook_type": "residual",
        "encoder_type": "topk",
        "auto_save_interval": 0,
        "hyperparameters": hyperparameters,
    }
    job = run_stage(client, app.worker_pid, stage, "/api/training/start", body)
    stage.rate = job["result"]["tokens"] / job["result"]["seconds"] if job["result"].get("seconds") else None
    progress("training: the bare matmuls, here")
    stage.floor = bare_step_rate(plan.width, plan.d_sae, plan.batch, repeats)
    long = {**body, "hyperparameters": {**hyperparameters, "total_steps": 50 * plan.steps}}
    cancel_stage(client, app.worker_pid, stage, "/api/training/start", long)
    return stage, job


def streamed_stage(
    client: httpx.Client,
    app: Appliance,
    plan: Plan,
    model: dict[str, Any],
    dataset: dict[str, Any],
    forward_rate: float | None,
    repeats: int,
) -> tuple[Stage, dict[str, Any]]:
    """A TopK SAE trained on activations streamed from the model, end to end (the job's running time),
    against one forward (the extraction floor's rate) and one bare step per trained activation."""
    stage = Stage(
        "streamed training",
        unit="act/s",
        floor_note=f"a forward + bare step per activation; {plan.buffer_tokens:,}-token buffer",
    )
    hyperparameters = topk_hyperparameters(plan, plan.stream_batch, plan.stream_steps, logs=4)
    body = {
        "model_id": model["id"],
        "dataset_id": dataset["id"],
        "layer": plan.layer,
        "hook_type": "residual",
        "encoder_type": "topk",
        "max_samples": plan.stream_samples,
        "context_length": plan.context,
        "auto_save_interval": 0,
        "hyperparameters": hyperparameters,
    }
    job = run_stage(client, app.worker_pid, stage, "/api/training/start", body)
    seconds = running_seconds(job)
    stage.rate = job["result"]["tokens"] / seconds if seconds else None
    bare = bare_step_rate(plan.width, plan.d_sae, plan.stream_batch, repeats)
    stage.floor = 1 / (1 / forward_rate + 1 / bare) if forward_rate else None
    long = {
        **body,
        "max_samples": None,
        "hyperparameters": {**hyperparameters, "total_steps": 50 * plan.stream_steps},
    }
    cancel_stage(client, app.worker_pid, stage, "/api/training/start", long)
    return stage, job


def features_stage(client: httpx.Client, app: Appliance, plan: Plan, training_id: str, other_id: str) -> Stage:
    """The feature pass of the trained SAE, against forward + encode of its own batches; the cancelled run
    reads another SAE (``other_id``), so that the first keeps its features for steering."""
    stage = Stage("feature pass", ratio_target=0.7, floor_note="same batches to the same block + encode")
    body = {
        "training_id": training_id,
        "eval_samples": plan.feature_samples,
        "context_length": plan.context,
        "top_k_examples": 10,
    }
    job = run_stage(client, app.worker_pid, stage, "/api/features/extract", body)
    stage.rate = job["result"]["tokens_per_second"]
    progress("feature pass: the floor, here")
    stage.floor = features_floor(job, app.data_dir)
    long = {**body, "training_id": other_id, "eval_samples": 16 * plan.feature_samples}
    cancel_stage(client, app.worker_pid, stage, "/api/features/extract", long)
    return stage


def generating(job: dict[str, Any]) -> bool:
    return moved(job) or job["message"].startswith("Generating")


def steering_stage(client: httpx.Client, app: Appliance, plan: Plan, training_id: str, repeats: int) -> Stage:
    """A streamed steering job through the API (its first progress: generation under way), then steered
    vs unsteered generation with the trained SAE, timed here."""
    stage = Stage("steering", ratio_target=0.9, floor_note="unsteered, no hook; greedy, KV cache")
    top = client.get(f"/api/training/{training_id}/features", params={"sort_by": "frequency", "limit": 1})
    feature = top.json()["data"][0]["index"] if top.status_code == 200 and top.json()["data"] else 0
    body = {
        "training_id": training_id,
        "prompt": PROMPT,
        "max_tokens": plan.steer_tokens,
        "temperature": 0.0,
        "features": [{"index": feature, "coefficient": 2.0}],
        "stream": True,
    }
    job = run_stage(client, app.worker_pid, stage, "/api/steering/generate", body, made_progress=generating)
    progress("steering: steered and unsteered generation, here")
    unsteered, steered = steering_pair(job, app.data_dir, feature, plan.steer_tokens, repeats)
    stage.rate, stage.floor = 1000 / steered, 1000 / unsteered
    long = {**body, "max_tokens": 16 * plan.steer_tokens}
    # Generation is the loop, and it reports no fraction: cancelled as soon as it is under way.
    now = {"made_progress": generating, "ready": lambda *_: True}
    cancel_stage(client, app.worker_pid, stage, "/api/steering/generate", long, **now)
    return stage


# -- the report -----------------------------------------------------------------------------------


@dataclass
class Band(Figure):
    """A figure judged against a range: PASS when ``low <= value <= high``."""

    low: float = 0.0
    high: float = math.inf

    def meets(self, value: float, target: float) -> bool:
        return self.low <= value <= self.high

    def target_text(self) -> str:
        return "" if self.target is None else f"{self.low:g} to {self.high:g} {self.unit}".strip()


def memory_figure(stage: Stage) -> Figure:
    """Plan / peak of the stage's job, judged against PLAN_BAND; not judged where the appliance does not
    report the two (an older version), a MISS where it reports them without a value."""
    planned, peak, reported = memory_of(stage.job)
    ratio = planned / peak if planned and peak else None
    low, high = PLAN_BAND
    text = f"plan {_mb(planned)}, peak {_mb(peak)}" if reported else "n/a: the job reports no memory_planned_mb"
    return Band(
        f"{stage.name}: memory plan / peak",
        ratio,
        "x",
        digits=2,
        target=high if reported else None,
        low=low,
        high=high,
        note=f"{text}; worker RSS peak {_mb(stage.rss_peak_mb)}",
    )


def stage_figures(stage: Stage) -> list[Figure]:
    """A stage's figures: its rate against its floor, memory plan against peak, first progress and the
    cancel latency (a stage without a floor or a cancel run leaves those out)."""
    figures: list[Figure] = []
    ran = running_seconds(stage.job)
    if stage.floor is not None or stage.rate is not None:
        figures.append(
            Figure(
                f"{stage.name} / floor",
                stage.ratio,
                "x",
                digits=2,
                target=stage.ratio_target,
                higher_is_better=True,
                errors=0 if stage.ratio is not None else len(stage.errors),
                note=f"{_rate(stage.rate, stage.unit)} vs floor {_rate(stage.floor, stage.unit)} ({stage.floor_note})",
            )
        )
    figures.append(memory_figure(stage))
    figures.append(
        Figure(
            f"{stage.name}: first progress",
            stage.first_progress_s,
            "s",
            target=FIRST_PROGRESS_TARGET_S,
            note="from the POST" + ("" if ran is None else f"; job ran {ran:.1f} s"),
        )
    )
    if stage.cancel_s is not None or stage.errors:
        figures.append(
            Figure(
                f"{stage.name}: cancel",
                stage.cancel_s,
                "s",
                digits=2,
                target=CANCEL_TARGET_S,
                errors=len(stage.errors),
                note=f"cancel POST to final status; cancelled {stage.cancel_note}" if stage.cancel_note else "",
            )
        )
    return figures


def stages_table(stages: list[Stage]) -> str:
    """One line per stage, the figures side by side."""
    rows = []
    for s in stages:
        planned, peak, _ = memory_of(s.job)
        rows.append(
            [
                s.name,
                _rate(s.rate, s.unit),
                _rate(s.floor, s.unit),
                "n/a" if s.ratio is None else f"{s.ratio:.2f}x",
                _mb(planned),
                _mb(peak),
                _mb(s.rss_peak_mb),
                _seconds(s.first_progress_s),
                _seconds(running_seconds(s.job)),
                _seconds(s.cancel_s),
            ]
        )
    headers = ["stage", "rate", "floor", "ratio", "plan", "peak", "worker RSS", "1st progress", "ran", "cancel"]
    return table(headers, rows, right=range(1, len(headers)))


def _rate(value: float | None, unit: str) -> str:
    return "n/a" if value is None else f"{value:,.0f} {unit}".strip()


def _mb(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.0f} MB"


def _seconds(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f} s"


# -- the run --------------------------------------------------------------------------------------


def _attempt(stages: list[Stage], name: str, make: Callable[[], Stage]) -> Stage | None:
    """Run one stage into ``stages``; a stage that could not run is kept with the reason (its figures are
    then a MISS) and None is returned: the stages after it need what it makes."""
    try:
        stage = make()
    except Exception as exc:  # noqa: BLE001 - a failed stage is a measured failure, reported as such
        print(f"error: {name}: {type(exc).__name__}: {exc}")
        stages.append(Stage(name, errors=[f"{type(exc).__name__}: {exc}"]))
        return None
    stages.append(stage)
    return stage


def _pipeline(client: httpx.Client, app: Appliance, plan: Plan, repeats: int) -> list[Stage]:
    """Every stage in order, each fed by the one before; stops at the first that fails."""
    stages: list[Stage] = []
    dataset, _ = wait_demo(client)
    made: dict[str, Any] = {}

    def imported() -> Stage:
        stage, made["model"] = import_stage(client, app, plan)
        return stage

    def extracted() -> Stage:
        stage, made["activations"] = extraction_stage(client, app, plan, made["model"], dataset)
        return stage

    def trained() -> Stage:
        stage, made["training"] = training_stage(client, app, plan, made["activations"]["target"]["id"], repeats)
        return stage

    def streamed() -> Stage:
        forward = stages[1].floor  # the extraction's: the same model to the same block
        stage, made["streamed"] = streamed_stage(client, app, plan, made["model"], dataset, forward, repeats)
        return stage

    def features() -> Stage:
        ids = made["training"]["target"]["id"], made["streamed"]["target"]["id"]
        return features_stage(client, app, plan, *ids)

    steps: list[tuple[str, Callable[[], Stage]]] = [
        ("import", imported),
        ("extraction", extracted),
        ("training", trained),
        ("streamed training", streamed),
        ("feature pass", features),
        ("steering", lambda: steering_stage(client, app, plan, made["training"]["target"]["id"], repeats)),
    ]
    for name, make in steps:
        if _attempt(stages, name, make) is None:
            break
    return stages


def _measured(stages: list[Stage], plan: Plan, repeats: int) -> Measured | None:
    """What the Orin Nano estimate needs, on a GPU and when extraction and training were measured."""
    import torch

    by_name = {s.name: s for s in stages}
    forward = by_name.get("extraction", Stage("")).floor
    step = by_name.get("training", Stage("")).rate
    if not torch.cuda.is_available() or not forward or not step:
        return None
    progress("this GPU's bf16 matmul rate, for the estimate")
    return Measured(forward, step, matmul_tflops(repeats), plan.layer + 1, plan.width, plan.context, plan.d_sae)


def _budget(client: httpx.Client) -> str:
    info = client.get("/api/system/info").json()["data"]
    budget = info.get("memory_budget_mb")
    return f"{info.get('total_memory_mb', 0):,.0f} MB planned with" + (f", budget {budget:,.0f} MB" if budget else "")


def run(args: argparse.Namespace) -> int:
    import torch

    from appliance.jobs import torch_threads

    threads, repeats = opening("pipeline", args)
    torch_threads.apply(threads)  # as the worker sizes torch's pools for its jobs
    plan = plan_from(args, torch.cuda.is_available())
    env = {
        "MISTUDIO_SEED_DEMO": "1",
        "MISTUDIO_MEMORY_TOTAL_MB": str(plan.memory_mb),
        "MISTUDIO_STREAM_BUFFER_TOKENS": str(plan.buffer_tokens),
        "MISTUDIO_TORCH_THREADS": str(threads),
        # torch reads it at import, whatever applies the setting afterwards
        "OMP_NUM_THREADS": str(threads),
    }
    with Appliance(extra_env=env, ready_timeout_s=120) as app:
        client = httpx.Client(base_url=app.url, timeout=600, headers=app.auth_headers())
        try:
            print(f"torch {torch.__version__}, {threads} thread(s) on both sides, best of {repeats} for the floors")
            for line in kv_lines(
                [
                    ("model", f"GPT-2 shape {plan.layers} x {plan.width}, random weights, {plan.precision}"),
                    ("memory", _budget(client)),
                    ("plan", _plan_text(plan)),
                ]
            ):
                print(line)
            stages = _pipeline(client, app, plan, repeats)
        finally:
            client.close()
    print(app.exit_summary())
    print(section("Stages"))
    print(stages_table(stages))
    figures = [figure for stage in stages for figure in stage_figures(stage)]
    measured = _measured(stages, plan, repeats)
    if measured is not None:
        figures += estimate_figures(measured)
    return finish(
        "pipeline",
        figures,
        settings={**dataclasses.asdict(plan), "threads": threads, "repeats": repeats, "torch": torch.__version__},
    )


def _plan_text(plan: Plan) -> str:
    return (
        f"layer {plan.layer}, context {plan.context}; extraction {plan.samples} samples; TopK SAE {plan.d_sae:,} "
        f"wide, k={plan.k}: {plan.steps} steps x {plan.batch} from the set, {plan.stream_steps} x "
        f"{plan.stream_batch} streamed ({plan.stream_samples} samples); features over {plan.feature_samples} "
        f"samples; steering {plan.steer_tokens} tokens"
    )
