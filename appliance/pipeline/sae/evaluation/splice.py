"""How much of the model an SAE keeps: splice it into the model on held-out text and compare.

For each batch of held-out tokens the model runs three times: as is, with the hooked activation
replaced by the SAE's reconstruction, and with it replaced by zeros. Next-token cross-entropy of
each gives the "CE loss recovered" (SAELens' definition):

    recovered = (CE_zero - CE_sae) / (CE_zero - CE_original)

1 means splicing costs nothing, 0 means the SAE is as bad as deleting the activation. KL divergence
is KL(original || spliced) of the next-token distributions, averaged over tokens.

A transcoder replaces the MLP's output with its prediction from the MLP's input (``reads_input``).

Special tokens left out of the SAE's training (``excluded``) are handled as SAELens' ``run_evals``
does with ``exclude_special_tokens``, so the SAE is judged where it was trained and the figures match
SAELens': at their positions the model keeps its own activation, the positions whose token is one of
them are left out of the CE and KL averages, and the zero ablation zeroes every position.

``held_out_quality`` measures the SAE on held-out activations alone: explained variance, L0, the
latents that never fired there, and the feature density histogram (how many latents fire at each
log10 frequency), SAELens' and Neuronpedia's view of a dictionary's health.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from appliance.contracts.params.models import HookPoint
from appliance.memory.admission import trim_heap
from appliance.pipeline.models.architecture import InputView, block_output, first_input
from appliance.pipeline.models.interrupt import Interruptible


def _splice(module: Any, replace: Any, read: Any = first_input) -> Any:
    """``replace(output, input)`` becomes the module's output; ``read`` takes the input from the
    module's call arguments."""

    def hook(_module: Any, args: Any, kwargs: Any, output: Any) -> Any:
        value = replace(block_output(output), read(args, kwargs))
        if isinstance(output, tuple):
            return (value, *output[1:])
        return value

    return module.register_forward_hook(hook, with_kwargs=True)


class _Splice:
    """One batch's next-token cross-entropies with the module as is, with the SAE's reconstruction in
    its place and with zeros in its place, and the KL between the first two (summed over tokens)."""

    def __init__(self, model: Any, module: Any, sae: Any, reads_input: bool, read: Any):
        self.model, self.module, self.sae, self.reads_input, self.read = model, module, sae, reads_input, read
        self.device = next(model.parameters()).device

    def sums(self, batch: list[list[int]], drop: Any) -> dict[str, float]:
        import torch
        import torch.nn.functional as F

        from appliance.pipeline.activations.extract import pad

        ids, mask = (t.to(self.device) for t in pad(batch))
        special = torch.isin(ids, drop) if len(drop) else None
        # Next-token targets: positions whose successor is a real token (and whose own is not excluded).
        valid = mask[:, 1:] == 1
        if special is not None:
            valid &= ~special[:, :-1]
        targets = ids[:, 1:][valid]

        def logits(replace: Any | None) -> Any:
            handle = _splice(self.module, replace, self.read) if replace is not None else None
            try:
                with torch.inference_mode():
                    out = self.model(input_ids=ids, attention_mask=mask, use_cache=False).logits[:, :-1][valid]
            finally:
                if handle is not None:
                    handle.remove()
            return out.float()

        def reconstruct(output: Any, given: Any) -> Any:
            source = given if self.reads_input else output
            flat = source.reshape(-1, source.shape[-1]).float()
            rebuilt = self.sae.reconstruct(flat).reshape(output.shape).to(output.dtype)
            return rebuilt if special is None else torch.where(special.unsqueeze(-1), output, rebuilt)

        # Few [tokens, vocabulary] tensors at once (estimates.SPLICE_LOGITS), each dropped once its figures are
        # taken: holding the three runs' logits and their softmaxes together was eight of them. The figures are
        # the same (cross_entropy is nll_loss of log_softmax).
        log_p = F.log_softmax(logits(None), -1)
        figures = {"original": F.nll_loss(log_p, targets, reduction="sum").item()}
        log_q = F.log_softmax(logits(reconstruct), -1)
        figures["sae"] = F.nll_loss(log_q, targets, reduction="sum").item()
        gap = log_p.sub(log_q)
        del log_q
        figures["kl"] = gap.mul_(log_p.exp_()).sum().item()
        del log_p, gap
        zeroed = logits(lambda output, _given: torch.zeros_like(output))
        figures["zero"] = F.cross_entropy(zeroed, targets, reduction="sum").item()
        return {**figures, "tokens": float(targets.numel())}


DENSITY_EDGES = [round(-6 + 0.25 * i, 2) for i in range(25)]  # log10 firing frequency, -6 .. 0


def held_out_quality(sae: Any, x: Any, target: Any | None = None, chunk: int = 4096) -> tuple[dict[str, Any], Any]:
    """Quality numbers on held-out activations (``sae`` and ``x`` in the same space), and the firing
    frequency per latent (for ``sparsity.safetensors``)."""
    import torch

    truth = x if target is None else target
    residual = torch.zeros((), dtype=torch.float64)
    fired = torch.zeros(sae.cfg.d_sae, dtype=torch.float64)
    active = 0.0
    device = sae.W_enc.device  # held-out activations may wait on the CPU while the SAE is on the GPU
    with torch.no_grad():
        for start in range(0, x.shape[0], chunk):
            part = x[start : start + chunk].to(device)
            z = sae.encode(part)
            x_hat = sae.reconstruct(part)
            residual += (x_hat - truth[start : start + chunk].to(device)).double().pow(2).sum().cpu()
            on = z > 0
            fired += on.double().sum(dim=0).cpu()
            active += float(on.sum())
    total = (truth - truth.mean(dim=0)).double().pow(2).sum().clamp_min(1e-12).cpu()
    tokens = x.shape[0]
    frequency = (fired / tokens).float()
    log_frequency = torch.log10(frequency[frequency > 0]).clamp(DENSITY_EDGES[0], 0)
    counts = torch.histogram(log_frequency, bins=torch.tensor(DENSITY_EDGES)).hist.int().tolist()
    quality = {
        "explained_variance": round(float(1 - residual / total), 5),
        "l0": round(active / tokens, 3),
        "never_fired": int((frequency == 0).sum()),
        "held_out_tokens": int(tokens),
        "density_histogram": {"log10_edges": DENSITY_EDGES, "counts": counts},
    }
    return quality, frequency


def evaluate(
    model: Any,
    module: Any,
    sae: Any,
    batches: Iterable[list[list[int]]],
    reads_input: bool = False,
    excluded: list[int] | None = None,
    source: HookPoint | None = None,
    check: Callable[[], None] | None = None,
) -> dict[str, float | None]:
    """``sae`` works on the module's raw activations (scaling folded in); ``batches`` are token id
    lists. ``reads_input``: the SAE maps the module's input to its output (transcoders). ``excluded``:
    token ids whose positions keep the model's activation and are not averaged (module docstring).
    ``source``: the input point a transcoder reads (``mlp_in``: the layer norm's value before its affine).
    ``check``: the job's control check, called between batches and before every block of the model."""
    import torch

    totals = {"original": 0.0, "sae": 0.0, "zero": 0.0, "kl": 0.0}
    read = InputView(model, source).read if source is not None else first_input
    splice = _Splice(model, module, sae, reads_input, read)
    if isinstance(sae, torch.nn.Module):
        splice.sae = sae.to(splice.device)
    drop = torch.tensor(excluded or [], dtype=torch.long, device=splice.device)
    count = 0
    with Interruptible(model, check):
        for batch in batches:
            if check is not None:
                check()
            if max(len(ids) for ids in batch) < 2:
                continue
            figures = splice.sums(batch, drop)
            count += int(figures.pop("tokens"))
            for name, value in figures.items():
                totals[name] += value
            trim_heap()  # the batch's logits, sized by its tokens, would pile up in the heap (trim_heap)
    if count == 0:
        return {}
    ce = {k: totals[k] / count for k in ("original", "sae", "zero")}
    gap = ce["zero"] - ce["original"]
    return {
        "ce_loss_original": round(ce["original"], 5),
        "ce_loss_with_sae": round(ce["sae"], 5),
        "ce_loss_zero_ablation": round(ce["zero"], 5),
        "ce_loss_recovered": round((ce["zero"] - ce["sae"]) / gap, 5) if gap > 0 else None,
        "kl_divergence": round(totals["kl"] / count, 6),
        "eval_tokens": count,
    }
