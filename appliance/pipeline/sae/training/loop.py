"""SAE training in the worker, from a stored activation set or from activations streamed out of the
model while it trains (``appliance.pipeline.activations.source``: batches in a deterministic order, so
a run resumed from a checkpoint sees exactly the batches the uninterrupted run would have seen; a
held-out share is never trained on and explained variance is measured there). Metrics go to
``training_metrics`` and out as ``training.progress`` events every ``log_every`` steps; checkpoints
(weights, optimizer, scheduler, step; ``checkpoints``: space-checked, pruned to a bounded set) every
``auto_save_interval`` steps, on "save now" (the job's "save" control, taken with
``ctx.take_save_request()``) and on pause or stop; at the end the SAE is written in the SAELens layout. A status change of the training row commits with its ``training.updated`` event.
"""

from __future__ import annotations

import math
import shutil
import time
from pathlib import Path
from collections.abc import Callable
from typing import Any, cast

import msgspec

from appliance.contracts.hyperparameters import Hyperparameters
from appliance.contracts.params.training import EvaluationSpec, StreamSpec, TrainRun
from appliance.data import trainings as sql
from appliance.data.layout import DataLayout
from appliance.data.storage import is_disk_full, storage_error
from appliance.jobs.context import JobContext, JobInterrupted
from appliance.memory.admission import Estimate, estimate_activations, estimate_model, estimate_sae_training, heap_reuse
from appliance.pipeline.activations.source import ActivationSource, StreamedSource
from appliance.pipeline.sae.evaluation.splice import held_out_quality
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
            return warm * 0.01 ** progress
        return warm
    return factor


def make_optimizer(sae: Any, hp: Hyperparameters) -> Any:
    import torch

    if hp.optimizer == "sgd":
        return torch.optim.SGD(sae.parameters(), lr=hp.learning_rate, momentum=0.9, weight_decay=hp.weight_decay)
    kind = torch.optim.AdamW if hp.optimizer == "adamw" else torch.optim.Adam
    return kind(sae.parameters(), lr=hp.learning_rate, betas=(0.9, 0.999), weight_decay=hp.weight_decay)


def _save_checkpoint(ctx: JobContext, folder: Path, sae: Any, optimizer: Any, scheduler: Any, step: int, tokens: int,
                     kind: checkpoints.Kind, held_x: Any, held_y: Any | None) -> None:
    """Write a checkpoint (space checked first, never left partial), prune to the bounded set and
    announce it with its held-out loss, which decides the "best" checkpoint that pruning keeps."""
    settings = ctx.settings
    loss = _held_out_loss(sae, held_x[:2048], None if held_y is None else held_y[:2048])
    checkpoints.save(folder, sae, optimizer, scheduler, step, tokens, kind=kind, held_out_loss=loss,
                     reserve_mb=settings.disk_reserve_mb, keep=settings.keep_checkpoints)
    ctx.event("training.checkpoint", {"training_id": folder.name, "step": step, "kind": kind,
                                      "held_out_loss": loss})


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


def _memory_mb(device: Any) -> float:
    """What the run holds: CUDA's peak allocation, or the process's resident set on CPU."""
    import torch

    from appliance.pipeline.activations.extract import PeakRss

    if device.type == "cuda":
        return round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    return round(PeakRss.rss() / 2**20, 1)


def norm_scale(source: ActivationSource, batch_size: int, seed: int, which: int, batches: int = 20) -> float:
    """sqrt(d) / mean norm over the first training batches (which = 0: inputs, 1: targets)."""
    import torch

    norms = []
    for i, pair in enumerate(source.batches(batch_size, seed, 0)):
        if i >= batches:
            break
        norms.append(pair[which].norm(dim=-1).mean())
    mean = float(torch.stack(norms).mean())
    return (pair[which].shape[-1] ** 0.5) / mean if mean > 0 else 1.0


def explained_variance(sae: Any, x: Any, target: Any | None) -> tuple[float, float]:
    import torch

    with torch.no_grad():
        out = sae.forward_train(x, target)
        truth = x if target is None else target
        residual = (out.x_hat - truth).pow(2).sum()
        total = (truth - truth.mean(dim=0)).pow(2).sum().clamp_min(1e-12)
        return float(1 - residual / total), float(out.l0 or 0)


def open_source(params: TrainRun, layout: DataLayout, buffer_tokens: int | None = None) -> ActivationSource:
    """The run's stored activation set, or its stream (``buffer_tokens``: as chosen at its first start)."""
    if params.stream is None:
        return ActivationSource(layout.activations(str(params.activation_id)), params.hook_name,
                                params.target_hook_name)
    if buffer_tokens is None:
        buffer_tokens = msgspec.json.decode(
            (layout.training(params.training_id) / STREAM_FILE).read_bytes())["buffer_tokens"]
    return StreamedSource(params.stream, layout, buffer_tokens)


def stream_estimate(spec: StreamSpec, d_in: int, buffer_tokens: int) -> Estimate:
    hooks = 2 if spec.target_point else 1
    return Estimate({**estimate_model(spec.parameters, spec.precision).parts,
                     "shuffle buffer": estimate_activations(buffer_tokens, d_in, "fp16", hooks).total,
                     "forward batch": estimate_activations(spec.forward_batch * spec.context_length, d_in,
                                                           "fp32", 2 * hooks).total})


def run(ctx: JobContext, params: TrainRun) -> dict[str, Any]:
    """Admit the run's memory, open its activation source, train."""
    hp = params.hyperparameters
    folder = ctx.layout.training(params.training_id)
    d_sae = hp.d_sae or hp.expansion_factor * params.d_in
    sae_part = estimate_sae_training(params.d_in, d_sae, hp.batch_size, optimizer=hp.optimizer)
    if params.stream is None:
        with ctx.memory.admit(ctx, sae_part):
            return _train(ctx, params, open_source(params, ctx.layout))
    spec = params.stream
    # The buffer's size decides the order of batches, so a resumed run keeps the size it started with;
    # a first start takes the largest that fits, halving down to a floor.
    chosen = folder / STREAM_FILE
    buffer = msgspec.json.decode(chosen.read_bytes())["buffer_tokens"] if chosen.is_file() else \
        ctx.settings.stream_buffer_tokens
    floor = min(buffer, max(8 * hp.batch_size, 8192))

    def estimate(tokens: int) -> Estimate:
        return Estimate({**sae_part.parts, **stream_estimate(spec, params.d_in, tokens).parts})

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
        source = open_source(params, ctx.layout, buffer)
        try:
            return _train(ctx, params, source)
        finally:
            source.close()


def _train(ctx: JobContext, params: TrainRun, source: ActivationSource) -> dict[str, Any]:
    import torch

    from appliance.pipeline.sae import build, sae_config
    from appliance.pipeline.sae.io.saelens import export
    from appliance.pipeline.sae.step import train_step

    hp = params.hyperparameters
    folder = ctx.layout.training(params.training_id)
    cfg = sae_config(params.encoder_type, params.d_in, hp, d_out=params.d_in if params.target_hook_name else None)
    # CUDA when there is one, with bf16 autocast where the GPU supports it (Orin does); fp32 on CPU.
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    amp = torch.bfloat16 if device.type == "cuda" and torch.cuda.is_bf16_supported() else None
    torch.manual_seed(params.seed)
    sae = build(cfg, device=device)
    optimizer = make_optimizer(sae, hp)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(hp))
    step = tokens = 0
    scale_in = scale_out = 1.0
    if hp.normalize_activations == "expected_average_only_in":
        ctx.progress(0.0, "Measuring the activations' scale", force=True)
        scale_in = norm_scale(source, hp.batch_size, params.seed, 0)
        scale_out = norm_scale(source, hp.batch_size, params.seed, 1) if params.target_hook_name else scale_in
    checkpoints.sweep_partials(folder)  # a worker killed mid-write left it; the run starts from a whole one
    checkpoint = checkpoints.latest(folder)
    if checkpoint is not None:
        from safetensors.torch import load_file

        sae.load_state_dict(load_file(str(checkpoint / "sae.safetensors")))
        state = torch.load(checkpoint / "state.pt", weights_only=False)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        step, tokens = state["step"], state["tokens"]
        torch.set_rng_state(state["rng"])
        ctx.progress(step / hp.total_steps, f"Resumed from step {step:,}", force=True)
        ctx.event("training.log", {"training_id": params.training_id, "level": "info",
                                   "message": f"Resumed from the checkpoint at step {step:,}", "step": step})
    held_x, held_y = source.held_out()
    held_x = held_x.to(device) * scale_in
    held_y = held_y.to(device) * scale_out if held_y is not None else None
    if checkpoint is None:
        first_x, first_y = next(source.batches(hp.batch_size, params.seed, 0))
        sae.init_b_dec((first_y * scale_out if first_y is not None else first_x * scale_in).to(device))
    _status(ctx, params.training_id, "running", total_steps=hp.total_steps)
    began, window_tokens, window_start = time.monotonic(), 0, time.monotonic()
    base_l1 = cfg.l1_coefficient
    stopped = False
    with heap_reuse():
        try:
            batches = source.batches(hp.batch_size, params.seed, step)
            while step < hp.total_steps:
                ctx.check()
                x, y = next(batches)
                x = x.to(device, non_blocking=True) * scale_in
                y = y.to(device, non_blocking=True) * scale_out if y is not None else None
                if hp.l1_warmup_steps:
                    cfg.l1_coefficient = base_l1 * min(1.0, (step + 1) / hp.l1_warmup_steps)
                log_now = (step + 1) % hp.log_every == 0 or step + 1 == hp.total_steps
                out = train_step(sae, optimizer, x, y, stats=log_now, amp=amp)
                scheduler.step()
                step += 1
                tokens += x.shape[0]
                window_tokens += x.shape[0]
                if log_now:
                    ev, _ = explained_variance(sae, held_x[:2048], None if held_y is None else held_y[:2048])
                    now = time.monotonic()
                    rate = window_tokens / max(now - window_start, 1e-9)
                    window_tokens, window_start = 0, now
                    row = {"step": step, "tokens": tokens, "loss": float(out.loss), "mse": float(out.mse),
                           "sparsity_loss": float(out.sparsity), "l0": float(out.l0 or 0),
                           "dead_latents": int(sae.dead.sum()), "explained_variance": round(ev, 5),
                           "learning_rate": scheduler.get_last_lr()[0], "activations_per_s": round(rate, 1),
                           "memory_mb": _memory_mb(device),
                           "eta_s": round((hp.total_steps - step) * hp.batch_size / rate, 1) if rate else None}
                    ctx.db.write(*sql.record_metrics(params.training_id, row))
                    ctx.progress(step / hp.total_steps, f"Step {step:,} of {hp.total_steps:,}",
                                 {"training_id": params.training_id, **row})
                # Taken once: a request that arrives during this save is answered at the next step.
                asked = ctx.take_save_request()
                if (params.auto_save_interval and step % params.auto_save_interval == 0) or asked:
                    _save_checkpoint(ctx, folder, sae, optimizer, scheduler, step, tokens,
                                     "user" if asked else "auto", held_x, held_y)
        except JobInterrupted as stop:
            if stop.control in ("pause", "requeue", "stop"):
                _save_checkpoint(ctx, folder, sae, optimizer, scheduler, step, tokens,
                                 cast(checkpoints.Kind, stop.control), held_x, held_y)
            if stop.control == "pause":
                _status(ctx, params.training_id, "paused")
            if stop.control != "stop":
                raise
            stopped = True
    dead = int(sae.dead.sum())
    sae.fold_scaling(scale_in, scale_out)  # the export works on the model's raw activations
    quality, frequency = held_out_quality(sae, held_x / scale_in,
                                          None if held_y is None else held_y / scale_out)
    names = {"hook_name": params.hook_name}
    if params.target_hook_name:
        names["hook_name_out"] = params.target_hook_name  # SAELens' name for a transcoder's output hook
    try:
        export(sae, folder / "export", {**msgspec.to_builtins(params.metadata), **names, "activation_scale": scale_in},
               log_sparsity=torch.log10(frequency.clamp_min(1e-10)))
    except Exception as exc:
        if not is_disk_full(exc):
            raise
        shutil.rmtree(folder / "export", ignore_errors=True)  # a half export would look finished to the API
        raise storage_error(exc, "the trained SAE's export", folder) from exc
    evaluation = {**quality, "dead_latents": dead, "steps": step, "tokens": tokens,
                  "seconds": round(time.monotonic() - began, 1)}
    if params.evaluation is not None:
        ctx.progress(0.99, "Evaluating: the SAE spliced into the model on held-out text", force=True)
        evaluation.update(splice_evaluation(params.evaluation, sae, ctx.layout))
    _status(ctx, params.training_id, "stopped" if stopped else "completed", step=step,
            evaluation=sql.encode(evaluation))
    return {"training_id": params.training_id, **evaluation}


def splice_evaluation(spec: EvaluationSpec, sae: Any, layout: DataLayout) -> dict[str, Any]:
    """CE loss recovered and KL on samples the activation set did not use (evaluation.splice)."""
    from datasets import load_from_disk

    from appliance.contracts.tokenization import TokenizeSettings, load_tokenizer
    from appliance.pipeline.models.loading import load
    from appliance.pipeline.sae.evaluation.splice import evaluate

    texts = load_from_disk(str(layout.dataset_arrow(spec.dataset_id)))
    start = min(spec.skip_samples, max(0, len(texts) - spec.samples))
    chosen = [t or "" for t in texts[start:start + spec.samples]["text"]]
    tokenizer = load_tokenizer(spec.tokenizer, layout.root,
                               TokenizeSettings(tokenizer=spec.tokenizer, max_length=spec.context_length,
                                                padding="do_not_pad"))
    ids = [e.ids for e in tokenizer.encode_batch(chosen)]
    model = load(spec.model_path, spec.precision)
    module = dict(model.named_modules())[spec.module]
    batches = [ids[i:i + 8] for i in range(0, len(ids), 8)]
    return evaluate(model, module, sae, batches, reads_input=spec.reads_input)


