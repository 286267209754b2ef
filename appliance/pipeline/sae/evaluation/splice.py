"""How much of the model an SAE keeps: splice it into the model on held-out text and compare.

For each batch of held-out tokens the model runs three times: as is, with the hooked activation
replaced by the SAE's reconstruction, and with it replaced by zeros. Next-token cross-entropy of
each gives the "CE loss recovered" (SAELens' definition):

    recovered = (CE_zero - CE_sae) / (CE_zero - CE_original)

1 means splicing costs nothing, 0 means the SAE is as bad as deleting the activation. KL divergence
is KL(original || spliced) of the next-token distributions, averaged over tokens.

A transcoder replaces the MLP's output with its prediction from the MLP's input (``reads_input``).

``held_out_quality`` measures the SAE on held-out activations alone: explained variance, L0, the
latents that never fired there, and the feature density histogram (how many latents fire at each
log10 frequency), SAELens' and Neuronpedia's view of a dictionary's health.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from appliance.pipeline.models.architecture import block_output, first_input


def _splice(module: Any, replace: Any) -> Any:
    """``replace(output, input)`` becomes the module's output."""

    def hook(_module: Any, args: Any, kwargs: Any, output: Any) -> Any:
        value = replace(block_output(output), first_input(args, kwargs))
        if isinstance(output, tuple):
            return (value, *output[1:])
        return value

    return module.register_forward_hook(hook, with_kwargs=True)


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
    model: Any, module: Any, sae: Any, batches: Iterable[list[list[int]]], reads_input: bool = False
) -> dict[str, float | None]:
    """``sae`` works on the module's raw activations (scaling folded in); ``batches`` are token id
    lists. ``reads_input``: the SAE maps the module's input to its output (transcoders)."""
    import torch
    import torch.nn.functional as F

    totals = {"original": 0.0, "sae": 0.0, "zero": 0.0, "kl": 0.0}
    count = 0
    device = next(model.parameters()).device
    if isinstance(sae, torch.nn.Module):
        sae = sae.to(device)
    for batch in batches:
        lengths = [len(ids) for ids in batch]
        width = max(lengths)
        if width < 2:
            continue
        ids = torch.zeros((len(batch), width), dtype=torch.long)
        mask = torch.zeros_like(ids)
        for row, tokens in enumerate(batch):
            ids[row, : len(tokens)] = torch.tensor(tokens)
            mask[row, : len(tokens)] = 1
        ids, mask = ids.to(device), mask.to(device)
        # Next-token targets: positions whose successor is a real token.
        valid = mask[:, 1:] == 1
        targets = ids[:, 1:][valid]

        def logits(replace: Any | None) -> Any:
            handle = _splice(module, replace) if replace is not None else None
            try:
                with torch.inference_mode():
                    out = model(input_ids=ids, attention_mask=mask, use_cache=False).logits[:, :-1][valid]
            finally:
                if handle is not None:
                    handle.remove()
            return out.float()

        def reconstruct(output: Any, given: Any) -> Any:
            source = given if reads_input else output
            flat = source.reshape(-1, source.shape[-1]).float()
            return sae.reconstruct(flat).reshape(output.shape).to(output.dtype)

        original = logits(None)
        spliced = logits(reconstruct)
        zeroed = logits(lambda output, _given: torch.zeros_like(output))
        n = targets.numel()
        totals["original"] += F.cross_entropy(original, targets, reduction="sum").item()
        totals["sae"] += F.cross_entropy(spliced, targets, reduction="sum").item()
        totals["zero"] += F.cross_entropy(zeroed, targets, reduction="sum").item()
        log_p, log_q = F.log_softmax(original, -1), F.log_softmax(spliced, -1)
        totals["kl"] += (log_p.exp() * (log_p - log_q)).sum().item()
        count += n
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
