"""SAE training in the worker, from a stored activation set or from activations streamed out of the
model while it trains (``appliance.pipeline.activations.source``: batches in a deterministic order, so
a run resumed from a checkpoint sees exactly the batches the uninterrupted run would have seen; a
held-out share is never trained on and explained variance is measured there). Metrics go to
``training_metrics`` and out as ``training.progress`` events every ``log_every`` steps; checkpoints
(weights, optimizer, scheduler, step; ``checkpoints``: space-checked, pruned to a bounded set) every
``auto_save_interval`` steps, on "save now" (the job's "save" control, taken with
``ctx.take_save_request()``) and on pause or stop; at the end the SAE is written in the SAELens
layout. A status change of the training row commits with its ``training.updated`` event. In
target-L0 mode (``target_l0``) a controller (``appliance.pipeline.sae.sparsity_control``) moves the
sparsity coefficient after every step; its state is in the checkpoints.
"""

from __future__ import annotations

import math
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import msgspec

from appliance.contracts.events import TrainingCheckpoint, TrainingLog
from appliance.contracts.hyperparameters import Hyperparameters, learning_rate
from appliance.contracts.params.training import EvaluationSpec, StreamSpec, TrainRun
from appliance.data import trainings as sql
from appliance.data.layout import DataLayout
from appliance.data.storage import is_disk_full, storage_error
from appliance.jobs.context import JobContext, JobInterrupted
from appliance.memory.admission import Estimate, estimate_activations, estimate_model, heap_reuse
from appliance.memory.estimates import SPLICE_BATCH, estimate_sae_steps, estimate_splice_evaluation, estimate_training
from appliance.pipeline.activations.source import EVAL_TOKENS, ActivationSource, Fill, StreamedSource
from appliance.pipeline.sae.evaluation.splice import held_out_quality
from appliance.pipeline.sae.sparsity_control import SparsityControl, coefficient_of, controlled, parameter_groups
from appliance.pipeline.sae.training import checkpoints

STREAM_FILE = "stream.json"  # a streamed run's shuffle-buffer size, fixed at its first start


def _lr_lambda(hp: Hyperparameters) -> Callable[[int], float]:
    def factor(step: int) -> float:
        warm = min(1.0, (step + 1) / max(1, hp.warmup_steps))
        progress = min(step, hp.total_steps) / hp.total_steps
        if hp.lr_decay == "cosine":
            return warm * 0.5 * (1 + math.cos(math.pi * progress))
        if hp.lr_decay == "linear":
            return warm * (1 - progress)
        if hp.lr_decay == "exponential":  # down to 1% of the rate at the last step
            return warm * 0.01**progress
        return warm

    return factor


def make_optimizer(sae: Any, hp: Hyperparameters) -> Any:
    import torch

    lr = learning_rate(hp, sae.cfg.architecture)  # a started training's is filled in; a bare one takes its SAE's
    # Target-L0 mode: JumpReLU's thresholds (the controller's actuator) learn faster than its weights.
    targeted = hp.target_l0 is not None and controlled(sae.cfg.architecture)
    params = parameter_groups(sae, lr) if targeted else sae.parameters()
    if hp.optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=hp.weight_decay)
    kind = torch.optim.AdamW if hp.optimizer == "adamw" else torch.optim.Adam
    # fused: one pass over each parameter instead of one per operation; on a CPU the update of a 768 x
    # 12,288 SAE drops from ~95 ms to ~10 ms, 8% of a TopK step (mistudio bench training). Same state_dict.
    return kind(params, lr=lr, betas=(0.9, 0.999), weight_decay=hp.weight_decay, fused=True)


@dataclass
class _Run:
    """A training in progress: what its steps change and what a checkpoint writes."""

    ctx: JobContext
    params: TrainRun
    folder: Path
    cfg: Any  # the SAEConfig; the L1 warm-up moves its coefficient
    sae: Any
    optimizer: Any
    scheduler: Any
    device: Any
    amp: Any  # the autocast dtype, or None
    scale_in: float = 1.0
    scale_out: float = 1.0
    held_x: Any = None
    held_y: Any = None
    step: int = 0
    tokens: int = 0
    control: SparsityControl | None = None  # target-L0 mode: moves cfg's sparsity coefficient
    # The last step's training loss (a tensor: read only when a checkpoint is written, so a step never
    # waits on the device for it), or the resumed checkpoint's; its checkpoint shows it.
    loss: Any = None

    def save(self, kind: checkpoints.Kind) -> None:
        """Write a checkpoint (space checked first, never left partial), prune to the bounded set and
        announce it with its held-out loss, which decides the "best" checkpoint that pruning keeps."""
        settings = self.ctx.settings
        held_y = None if self.held_y is None else self.held_y[:2048]
        loss = _held_out_loss(self.sae, self.held_x[:2048], held_y)
        checkpoints.save(
            self.folder,
            self.sae,
            self.optimizer,
            self.scheduler,
            self.step,
            self.tokens,
            kind=kind,
            held_out_loss=loss,
            scale=(self.scale_in, self.scale_out),
            loss=None if self.loss is None else float(self.loss),
            control=None if self.control is None else self.control.state_dict(),
            reserve_mb=settings.disk_reserve_mb,
            keep=settings.keep_checkpoints,
        )
        self.ctx.event(
            "training.checkpoint",
            TrainingCheckpoint(training_id=self.params.training_id, step=self.step, kind=kind, held_out_loss=loss),
        )


@dataclass
class _Throughput:
    """Activations trained on since the last logged step, for its activations/s."""

    tokens: int = 0
    since: float = field(default_factory=time.monotonic)

    def rate(self) -> float:
        """Activations/s since the last call; starts the next window."""
        now = time.monotonic()
        rate = self.tokens / max(now - self.since, 1e-9)
        self.tokens, self.since = 0, now
        return rate


def _held_out_loss(sae: Any, x: Any, target: Any | None) -> float | None:
    """The training objective on activations the run never trains on (no side effects: the
    dead-latent counter moves only in train_step)."""
    import torch

    with torch.no_grad():
        loss = float(sae.forward_train(x, target, stats=False).loss)
    return loss if math.isfinite(loss) else None


def _status(ctx: JobContext, training_id: str, status: str, **fields: Any) -> None:
    """The row's new status and its event, committed together."""
    ctx.db.write(*sql.status_change(training_id, status, job_id=ctx.job_id, **fields))


def _memory_mb(ctx: JobContext, device: Any) -> float:
    """The worker's peak memory since the run began (the job's: resident set plus CUDA's peak reserved,
    appliance.memory.usage), so it never reads below what the run really took; CUDA's own peak without it."""
    import torch

    if ctx.usage is not None:
        return float(ctx.usage.peak_mb())
    if device.type == "cuda":
        return round(torch.cuda.max_memory_reserved(device) / 2**20, 1)
    from appliance.memory.usage import rss_bytes

    return round(rss_bytes() / 2**20, 1)


def norm_scales(source: ActivationSource, batch_size: int, seed: int) -> tuple[float, float]:
    """sqrt(d) / mean norm over the first training batches (``source.scale_batches``: a stream's first
    block only), for the inputs and for the targets (the inputs' again when there are none)."""
    import torch

    def scale(norms: list[Any], width: int) -> float:
        mean = float(torch.stack(norms).mean())
        return (width**0.5) / mean if mean > 0 else 1.0

    ins, outs = [], []
    batches = source.batches(batch_size, seed, 0)
    for _ in range(source.scale_batches(batch_size, seed)):
        x, y = next(batches)
        ins.append(x.norm(dim=-1).mean())
        if y is not None:
            outs.append(y.norm(dim=-1).mean())
    scale_in = scale(ins, x.shape[-1])
    return scale_in, (scale(outs, y.shape[-1]) if y is not None else scale_in)


def explained_variance(sae: Any, x: Any, target: Any | None) -> tuple[float, float]:
    import torch

    with torch.no_grad():
        out = sae.forward_train(x, target)
        truth = x if target is None else target
        residual = (out.x_hat - truth).pow(2).sum()
        total = (truth - truth.mean(dim=0)).pow(2).sum().clamp_min(1e-12)
        return float(1 - residual / total), float(out.l0 or 0)


def open_source(
    params: TrainRun,
    layout: DataLayout,
    buffer_tokens: int | None = None,
    check: Callable[[], None] | None = None,
) -> ActivationSource:
    """The run's stored activation set, or its stream (``buffer_tokens``: as chosen at its first start;
    ``check``: the job's control check, called inside the stream's forward passes too)."""
    if params.stream is None:
        return ActivationSource(
            layout.activations(str(params.activation_id)), params.hook_name, params.target_hook_name
        )
    if buffer_tokens is None:
        buffer_tokens = msgspec.json.decode((layout.training(params.training_id) / STREAM_FILE).read_bytes())[
            "buffer_tokens"
        ]
    return StreamedSource(params.stream, layout, buffer_tokens, check)


def stream_estimate(spec: StreamSpec, d_in: int, buffer_tokens: int) -> Estimate:
    hooks = 2 if spec.target_point else 1
    return Estimate(
        {
            **estimate_model(spec.parameters, spec.precision, checkpoint=spec.model_path).parts,
            "shuffle buffer": estimate_activations(buffer_tokens, d_in, "fp16", hooks).total,
            "forward batch": estimate_activations(
                spec.forward_batch * spec.context_length, d_in, "fp32", 2 * hooks
            ).total,
        }
    )


def run(ctx: JobContext, params: TrainRun) -> dict[str, Any]:
    """Admit the run's memory, open its activation source, train."""
    hp = params.hyperparameters
    folder = ctx.layout.training(params.training_id)
    stopping = _stopping(ctx, folder)
    sae_part = estimate_sae_steps(params.encoder_type, params.d_in, hp)
    spec_eval = params.evaluation
    evaluation = (
        estimate_splice_evaluation(spec_eval.model_path, spec_eval.precision, spec_eval.context_length)
        if spec_eval is not None
        else None
    )
    held_out = estimate_activations(EVAL_TOKENS, params.d_in, "fp32", 2 if params.target_hook_name else 1).total
    if params.stream is None:
        with ctx.memory.admit(ctx, estimate_training(sae_part, evaluation, held_out)):
            return _train(ctx, params, open_source(params, ctx.layout), stopping)
    spec = params.stream
    # The buffer's size decides the order of batches, so a resumed run keeps the size it started with;
    # a first start takes the largest that fits, halving down to a floor.
    chosen = folder / STREAM_FILE
    buffer = (
        msgspec.json.decode(chosen.read_bytes())["buffer_tokens"]
        if chosen.is_file()
        else ctx.settings.stream_buffer_tokens
    )
    floor = min(buffer, max(8 * hp.batch_size, 8192))

    def estimate(tokens: int) -> Estimate:
        steps = Estimate({**sae_part.parts, **stream_estimate(spec, params.d_in, tokens).parts})
        return estimate_training(steps, evaluation, held_out)

    def shrink(_: Estimate) -> Estimate | None:
        nonlocal buffer
        if chosen.is_file() or buffer // 2 < floor:
            return None
        buffer //= 2
        return estimate(buffer)

    with ctx.memory.admit(ctx, estimate(buffer), shrink=shrink):
        folder.mkdir(parents=True, exist_ok=True)
        chosen.write_bytes(msgspec.json.encode({"buffer_tokens": buffer}))
        ctx.progress(0.0, f"Planning the stream: {buffer:,}-token shuffle buffer", force=True)
        source = cast(StreamedSource, open_source(params, ctx.layout, buffer, ctx.check))
        source.on_fill = _fill_reporter(ctx, params.training_id)
        try:
            result = _train(ctx, _record_excluded(ctx, params, source), source, stopping)
        finally:
            source.close()
    # Each sample the run needed went through the model once per epoch it was read in.
    return {**result, "tokens_forwarded": source.tokens_forwarded}


_FILLS = {"buffer": "Filling the shuffle buffer", "held_out": "Computing the held-out activations"}


def _fill_reporter(ctx: JobContext, training_id: str) -> Callable[[Fill], None]:
    """Progress while a stream's model runs over a block (minutes on a large model, before the first
    step and between steps): tokens done, rate and time left, at the steps' progress so far."""

    def report(fill: Fill) -> None:
        rate, eta = fill.rate, fill.eta_s
        message = f"{_FILLS[fill.kind]}: {fill.done:,} of {fill.total:,} tokens"
        if rate is not None and eta is not None:
            message += f", {rate:,.0f} tokens/s, about {_duration(eta)} left"
        ctx.progress(
            ctx.fraction,
            message,
            force=fill.done in (0, fill.total),  # its start and end always show
            training_id=training_id,
            fill_tokens=fill.done,
            fill_total=fill.total,
            fill_tokens_per_s=None if rate is None else round(rate, 1),
            fill_eta_s=None if eta is None else round(eta, 1),
            tokens_forwarded=fill.forwarded,
        )

    return report


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"


def _record_excluded(ctx: JobContext, params: TrainRun, source: StreamedSource) -> TrainRun:
    """A streamed run's left-out token ids, resolved from its tokenizer when the source opened: on the
    training's row, and in the export's metadata (SAELens' ``exclude_special_tokens``: the ids, or false)."""
    assert params.stream is not None
    ctx.db.write(sql.record_excluded(params.training_id, source.excluded))
    chosen: list[int] | bool = source.excluded if params.stream.exclude_special_tokens else False
    return msgspec.structs.replace(
        params, metadata=msgspec.structs.replace(params.metadata, exclude_special_tokens=chosen)
    )


def _stopping(ctx: JobContext, folder: Path) -> bool:
    """Whether the job started with a stop already asked and a checkpoint to end at (a paused training
    stopped). The stop is answered now, so that memory admission and preparing the run from the checkpoint
    go on as for a resume (a cancel still ends them), and the run stops before its first step: the same
    ending, checkpoint, export and evaluation, as a running training's stop."""
    if ctx.control != "stop" or checkpoints.latest(folder) is None:
        return False
    ctx.answered()
    return True


def _train(ctx: JobContext, params: TrainRun, source: ActivationSource, stopping: bool = False) -> dict[str, Any]:
    """Build (or resume) the SAE, train it to the last step or until stopped, export it and report
    its quality; the training row ends "completed" or "stopped" (a pause re-raises). ``stopping``: end
    at the resumed checkpoint without a step (``_stopping``)."""
    hp = params.hyperparameters
    try:
        run = _prepare(ctx, params, source)  # a streamed source runs the model here
    except JobInterrupted as stop:
        if stop.control == "pause":  # before any step: nothing to save, the resumed run prepares again
            _status(ctx, params.training_id, "paused")
        raise
    _status(ctx, params.training_id, "running", total_steps=hp.total_steps)
    began = time.monotonic()
    stopped = _steps(run, source, stopping)
    evaluation = {
        **_export(run),
        "steps": run.step,
        "tokens": run.tokens,
        "seconds": round(time.monotonic() - began, 1),
    }
    if params.evaluation is not None:
        source.close()  # a stream's model goes before the evaluation loads its own (the plan counts one)
        ctx.progress(0.99, "Evaluating: the SAE spliced into the model on held-out text", force=True)
        try:
            evaluation.update(splice_evaluation(params.evaluation, run.sae, ctx.layout, ctx.check))
        except JobInterrupted as stop:
            # Every step ran and the SAE is exported: a pause or stop ends the run without these figures
            # (Evaluate measures them again); a cancel or a worker restart goes on to the runner.
            if stop.control not in ("pause", "stop"):
                raise
            message = f"The spliced evaluation was interrupted ({stop.control}); run it again with Evaluate"
            ctx.event(
                "training.log",
                TrainingLog(training_id=params.training_id, level="warning", message=message, step=run.step),
            )
    _status(
        ctx, params.training_id, "stopped" if stopped else "completed", step=run.step, evaluation=sql.encode(evaluation)
    )
    return {"training_id": params.training_id, **evaluation}


def _prepare(ctx: JobContext, params: TrainRun, source: ActivationSource) -> _Run:
    """The SAE, its optimizer and schedule, the activations' scale and the held-out activations; from
    the latest checkpoint when there is one. The order of what draws random numbers is fixed: a
    resumed run must continue exactly as the uninterrupted one would have."""
    import torch

    from appliance.pipeline.sae import build, sae_config

    hp = params.hyperparameters
    cfg = sae_config(params.encoder_type, params.d_in, hp, d_out=params.d_in if params.target_hook_name else None)
    # CUDA when there is one, with bf16 autocast where the GPU supports it (Orin does); fp32 on CPU.
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    amp = torch.bfloat16 if device.type == "cuda" and torch.cuda.is_bf16_supported() else None
    torch.manual_seed(params.seed)
    sae = build(cfg, device=device)
    optimizer = make_optimizer(sae, hp)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(hp))
    folder = ctx.layout.training(params.training_id)
    run = _Run(ctx, params, folder, cfg, sae, optimizer, scheduler, device, amp)
    if hp.target_l0 is not None and controlled(params.encoder_type):
        run.control = SparsityControl(cfg, hp.target_l0)  # before the resume, which restores its state
    if hp.normalize_activations == "expected_average_only_in":
        # A resumed run takes its checkpoint's scale: measuring it again would run a stream's model over
        # the first block, long left behind. A new run measures it on the block its first steps read
        # (kept by the source), so that block runs through the model once.
        latest = checkpoints.latest(folder)
        saved = checkpoints.read_info(latest) if latest is not None else None
        if saved is None or saved.scale is None:
            ctx.progress(ctx.fraction, "Measuring the activations' scale", force=True)
        run.scale_in, run.scale_out = (
            saved.scale if saved is not None and saved.scale else norm_scales(source, hp.batch_size, params.seed)
        )
    held_x, held_y = source.held_out()  # before the RNG is restored: a stream's model loads by then
    resumed = _resume(run)
    run.held_x = held_x.to(device) * run.scale_in
    run.held_y = held_y.to(device) * run.scale_out if held_y is not None else None
    if not resumed:  # the first batch: from the block the scale was measured on, still kept
        first_x, first_y = next(source.batches(hp.batch_size, params.seed, 0))
        sae.init_b_dec((first_y * run.scale_out if first_y is not None else first_x * run.scale_in).to(device))
    return run


def _resume(run: _Run) -> bool:
    """Load the latest whole checkpoint into the run (weights, optimizer, schedule, step, random
    state); False when there is none and the run starts from scratch."""
    import torch

    checkpoints.sweep_partials(run.folder)  # a worker killed mid-write left it; the run starts from a whole one
    checkpoint = checkpoints.latest(run.folder)
    if checkpoint is None:
        return False
    from safetensors.torch import load_file

    run.sae.load_state_dict(load_file(str(checkpoint / "sae.safetensors")))
    state = torch.load(checkpoint / "state.pt", weights_only=False)
    run.optimizer.load_state_dict(state["optimizer"])
    run.scheduler.load_state_dict(state["scheduler"])
    run.step, run.tokens = state["step"], state["tokens"]
    saved = checkpoints.read_info(checkpoint)
    run.loss = saved.loss if saved is not None else None
    torch.set_rng_state(state["rng"])
    if run.control is not None and "sparsity_control" in state:
        run.control.load_state_dict(state["sparsity_control"])
    ctx, step = run.ctx, run.step
    ctx.progress(step / run.params.hyperparameters.total_steps, f"Resumed from step {step:,}", force=True)
    message = f"Resumed from the checkpoint at step {step:,}"
    ctx.event("training.log", TrainingLog(training_id=run.params.training_id, level="info", message=message, step=step))
    return True


def _steps(run: _Run, source: ActivationSource, stopping: bool = False) -> bool:
    """Train up to the last step; True when the job was asked to stop there. A pause, stop or
    requeue writes a checkpoint first; a pause or requeue then raises on to the runner. ``stopping``:
    no step runs; the stop's checkpoint replaces the one the run resumed from."""
    if stopping:
        run.save("stop")
        return True
    throughput = _Throughput()
    with heap_reuse():
        try:
            _train_until_done(run, source, throughput)
        except JobInterrupted as stop:
            if stop.control in ("pause", "requeue", "stop"):
                run.save(cast(checkpoints.Kind, stop.control))
            if stop.control == "pause":  # the row says where it paused (the step of its checkpoint)
                _status(run.ctx, run.params.training_id, "paused", step=run.step)
            if stop.control != "stop":
                raise
            run.ctx.answered()  # the export and evaluation that follow still answer a cancel
            return True
    return False


def _train_until_done(run: _Run, source: ActivationSource, throughput: _Throughput) -> None:
    """The hot loop: one optimizer step per batch, metrics every ``log_every`` steps, checkpoints on
    schedule or when asked. What it reads every step is bound to locals once."""
    from appliance.pipeline.sae.step import train_step

    ctx, params, hp, cfg = run.ctx, run.params, run.params.hyperparameters, run.cfg
    sae, optimizer, scheduler = run.sae, run.optimizer, run.scheduler
    device, amp, scale_in, scale_out = run.device, run.amp, run.scale_in, run.scale_out
    base_l1, control = cfg.l1_coefficient, run.control
    batches = source.batches(hp.batch_size, params.seed, run.step)
    while run.step < hp.total_steps:
        ctx.check()
        x, y = next(batches)
        x = x.to(device, non_blocking=True) * scale_in
        y = y.to(device, non_blocking=True) * scale_out if y is not None else None
        ramp = min(1.0, (run.step + 1) / hp.l1_warmup_steps) if hp.l1_warmup_steps else 1.0
        moves, pace = False, 1.0
        if control is not None:
            moves = control.apply(ramp)
            pace = scheduler.get_last_lr()[0] / scheduler.base_lrs[0]  # this step's learning-rate factor
        elif hp.l1_warmup_steps:
            cfg.l1_coefficient = base_l1 * ramp
        log_now = (run.step + 1) % hp.log_every == 0 or run.step + 1 == hp.total_steps
        # The controller reads every step's L0: counting it is one more pass over [batch, d_sae].
        out = train_step(sae, optimizer, x, y, stats=log_now or control is not None, amp=amp)
        run.loss = out.loss.detach()
        scheduler.step()
        if control is not None and moves:
            control.update(float(out.l0 or 0), pace)
        run.step += 1
        run.tokens += x.shape[0]
        throughput.tokens += x.shape[0]
        if log_now:
            _log_step(run, out, throughput)
        # Taken once: a request that arrives during this save is answered at the next step.
        asked = ctx.take_save_request()
        if (params.auto_save_interval and run.step % params.auto_save_interval == 0) or asked:
            run.save("user" if asked else "auto")


def _log_step(run: _Run, out: Any, throughput: _Throughput) -> None:
    """A logged step's metrics: a ``training_metrics`` row and a ``training.progress`` event."""
    hp, step = run.params.hyperparameters, run.step
    ev, _ = explained_variance(run.sae, run.held_x[:2048], None if run.held_y is None else run.held_y[:2048])
    rate = throughput.rate()
    row = {
        "step": step,
        "tokens": run.tokens,
        # item(), not float(): these still require grad, and float() of such a tensor warns.
        "loss": out.loss.item(),
        "mse": out.mse.item(),
        "sparsity_loss": out.sparsity.item(),
        "l0": float(out.l0 or 0),
        "dead_latents": int(run.sae.dead.sum()),
        "explained_variance": round(ev, 5),
        "sparsity_coefficient": coefficient_of(run.cfg),  # the one this step trained with
        "learning_rate": run.scheduler.get_last_lr()[0],
        "activations_per_s": round(rate, 1),
        "memory_mb": _memory_mb(run.ctx, run.device),
        "eta_s": round((hp.total_steps - step) * hp.batch_size / rate, 1) if rate else None,
    }
    run.ctx.db.write(*sql.record_metrics(run.params.training_id, row))
    # Forced: a logged step is a point of the live charts (as it is a row of the metrics table), and the
    # buffer-fill reports between steps would otherwise throttle it away.
    run.ctx.progress(
        step / hp.total_steps,
        f"Step {step:,} of {hp.total_steps:,}",
        force=True,
        training_id=run.params.training_id,
        **row,
    )


def _export(run: _Run) -> dict[str, Any]:
    """Fold the activations' scale into the weights, measure the SAE on the held-out activations and
    write it in the SAELens layout; its held-out quality and dead latents."""
    import torch

    from appliance.pipeline.models.lens import loading_metadata
    from appliance.pipeline.sae.io.provenance import saelens_metadata
    from appliance.pipeline.sae.io.saelens import export

    params, sae, folder = run.params, run.sae, run.folder
    dead = int(sae.dead.sum())
    sae.fold_scaling(run.scale_in, run.scale_out)  # the export works on the model's raw activations
    held_y = None if run.held_y is None else run.held_y / run.scale_out
    quality, frequency = held_out_quality(sae, run.held_x / run.scale_in, held_y)
    names = {"hook_name": params.hook_name}
    if params.target_hook_name:
        names["hook_name_out"] = params.target_hook_name  # SAELens' name for a transcoder's output hook
    # TransformerLens loaded with loading_metadata()'s kwargs holds at these hook names what the SAE read.
    metadata = {**saelens_metadata(run.ctx.layout, params.metadata), **loading_metadata(), **names}
    try:
        export(
            sae,
            folder / "export",
            {**metadata, "activation_scale": run.scale_in},
            log_sparsity=torch.log10(frequency.clamp_min(1e-10)),
        )
    except Exception as exc:
        if not is_disk_full(exc):
            raise
        shutil.rmtree(folder / "export", ignore_errors=True)  # a half export would look finished to the API
        raise storage_error(exc, "the trained SAE's export", folder) from exc
    return {**quality, "dead_latents": dead}


def splice_evaluation(
    spec: EvaluationSpec, sae: Any, layout: DataLayout, check: Callable[[], None] | None = None
) -> dict[str, Any]:
    """CE loss recovered and KL on samples the activation set did not use (evaluation.splice), with the
    special tokens the SAE was trained without handled as SAELens does; ``check``: the job's control
    check, called between batches and inside their forward passes."""
    from datasets import load_from_disk

    from appliance.contracts.special_tokens import excluded_ids
    from appliance.contracts.tokenization import TokenizeSettings, load_tokenizer
    from appliance.pipeline.models.loading import load
    from appliance.pipeline.sae.evaluation.splice import evaluate

    texts = load_from_disk(str(layout.dataset_arrow(spec.dataset_id)))
    start = min(spec.skip_samples, max(0, len(texts) - spec.samples))
    chosen = [t or "" for t in texts[start : start + spec.samples]["text"]]
    tokenizer = load_tokenizer(
        spec.tokenizer,
        layout.root,
        TokenizeSettings(tokenizer=spec.tokenizer, max_length=spec.context_length, padding="do_not_pad"),
    )
    ids = [e.ids for e in tokenizer.encode_batch(chosen)]
    model = load(spec.model_path, spec.precision)
    module = dict(model.named_modules())[spec.module]
    batches = [ids[i : i + SPLICE_BATCH] for i in range(0, len(ids), SPLICE_BATCH)]
    excluded = excluded_ids(spec.exclude_special_tokens, spec.special_token_ids, spec.tokenizer, layout.root)
    return evaluate(
        model, module, sae, batches, reads_input=spec.reads_input, excluded=excluded, source=spec.source, check=check
    )
