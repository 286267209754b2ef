"""Short, interactive probes of one feature that need the model (the worker's interactive lane):

- ``activations_on``: the feature's activation at every token of a text the user types (the
  heatmap), with the strongest other features per token; none at the special tokens the extraction
  left out, as in its stored contexts.
- ``ablation``: the feature zeroed where it fires, on its own max-activating contexts. The hooked
  activation becomes ``x - z_i * W_dec[i]`` (the SAE's error term and every other latent kept), and
  the model's next-token predictions are compared with the untouched run:

      perplexity_delta = exp(CE_ablated) - exp(CE_original)   over the contexts' next tokens
      impact_score     = mean total-variation distance between the two next-token distributions
                         at the positions where the feature fires (0: no effect, 1: disjoint)

Models stay loaded between probes (appliance.pipeline.models.cache) so repeated requests are fast.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgspec

from appliance.contracts.params.features import AblationParams, ActivationsOnParams, ProbeParams
from appliance.data import features as sql
from appliance.jobs.context import JobContext
from appliance.pipeline.models.cache import exclusive, model_and_sae
from appliance.pipeline.models.interrupt import Interruptible


def probe_model(ctx: JobContext, params: ProbeParams) -> tuple[Any, Any]:
    """The probe's model and SAE, from the cache (loaded on first use)."""
    return model_and_sae(ctx, params.training_id, params.model_path, params.precision, params.parameters)


def activations_on(ctx: JobContext, params: ActivationsOnParams) -> dict[str, Any]:
    import torch

    from appliance.contracts.tokenization import TokenizeSettings, load_tokenizer, pieces
    from appliance.pipeline.activations.extract import Capture

    model, sae = probe_model(ctx, params)
    tokenizer = load_tokenizer(
        params.tokenizer,
        ctx.layout.root,
        TokenizeSettings(tokenizer=params.tokenizer, max_length=params.context_length, padding="do_not_pad"),
    )
    encoding = tokenizer.encode(params.text)
    if not encoding.ids:
        return {"tokens": [], "token_ids": [], "activations": [], "others": [], "max_activation": 0.0}
    with exclusive(model), Interruptible(model, ctx.check):
        capture = Capture(model, [params.hook_point])
        try:
            captured, _, _ = capture([encoding.ids])
        finally:
            capture.close()
    with torch.no_grad():
        z = sae.encode(captured[params.hook_point.name].float()).float().cpu()
    z[torch.isin(torch.tensor(encoding.ids), torch.tensor(params.excluded_token_ids, dtype=torch.long))] = 0
    values = z[:, params.feature]
    others = z.clone()
    others[:, params.feature] = 0
    top = others.topk(params.top_others, dim=1)
    return {
        "tokens": pieces(encoding, params.text, tokenizer),
        "token_ids": encoding.ids,
        "activations": [round(float(v), 4) for v in values],
        "others": [
            [[int(i), round(float(v), 4)] for i, v in zip(ids.tolist(), vals.tolist()) if v > 0]
            for ids, vals in zip(top.indices, top.values)
        ],
        "max_activation": round(float(values.max()), 4),
    }


@dataclass
class _AblationTotals:
    """Sums over the contexts' next tokens, for ``ablation``'s figures."""

    original: float = 0.0  # cross-entropy, untouched run
    ablated: float = 0.0  # cross-entropy, the feature zeroed
    tv: float = 0.0  # total-variation distance, at the positions where the feature fires
    tokens: int = 0
    fired: int = 0

    def add(self, original: Any, ablated: Any, targets: Any, mask: Any) -> None:
        """One context: its [positions, vocab] logits of both runs, next tokens and where it fires."""
        import torch.nn.functional as F

        self.original += F.cross_entropy(original, targets, reduction="sum").item()
        self.ablated += F.cross_entropy(ablated, targets, reduction="sum").item()
        if mask.any():
            p, q = original[mask].softmax(-1), ablated[mask].softmax(-1)
            self.tv += 0.5 * (p - q).abs().sum().item()
            self.fired += int(mask.sum())
        self.tokens += len(targets)

    def result(self, contexts: int) -> dict[str, Any]:
        if self.tokens == 0:
            return {
                "perplexity_original": None,
                "perplexity_ablated": None,
                "perplexity_delta": None,
                "impact_score": None,
                "contexts": 0,
                "tokens": 0,
                "fired_tokens": 0,
            }
        ppl_original = math.exp(self.original / self.tokens)
        ppl_ablated = math.exp(self.ablated / self.tokens)
        return {
            "perplexity_original": round(ppl_original, 4),
            "perplexity_ablated": round(ppl_ablated, 4),
            "perplexity_delta": round(ppl_ablated - ppl_original, 4),
            "impact_score": round(self.tv / self.fired, 4) if self.fired else 0.0,
            "contexts": contexts,
            "tokens": self.tokens,
            "fired_tokens": self.fired,
            "computed_at": time.time(),
        }


def ablation(ctx: JobContext, params: AblationParams) -> dict[str, Any]:
    """The feature zeroed where it fires on each context, against the untouched run (module
    docstring); the figures are stored with the feature."""
    import torch

    from appliance.pipeline.models.architecture import InputView

    model, sae = probe_model(ctx, params)
    module = dict(model.named_modules())[params.hook_point.module]
    device = next(model.parameters()).device
    fired_at: list[Any] = []
    hook = _ablation_hook(sae, params, fired_at, InputView(model, params.hook_point).read)
    totals = _AblationTotals()
    for ids in params.contexts:
        ctx.check()
        if len(ids) < 2:
            continue
        batch = torch.tensor([ids[: params.context_length]], device=device)
        mask = torch.ones_like(batch)  # unpadded; given, so a pad-id first token draws no warning
        with torch.inference_mode(), exclusive(model), Interruptible(model, ctx.check):
            original = model(input_ids=batch, attention_mask=mask, use_cache=False).logits[0, :-1].float()
            fired_at.clear()
            handle = module.register_forward_hook(hook, with_kwargs=True)
            try:
                ablated = model(input_ids=batch, attention_mask=mask, use_cache=False).logits[0, :-1].float()
            finally:
                handle.remove()
        targets = batch[0, 1:]
        mask = fired_at[0][0, :-1] if fired_at else torch.zeros(len(targets), dtype=torch.bool, device=device)
        totals.add(original, ablated, targets, mask)
    result = totals.result(len(params.contexts))
    ctx.db.write(sql.set_ablation(params.training_id, params.feature, msgspec.json.encode(result).decode()))
    return result


def _ablation_hook(
    sae: Any, params: AblationParams, fired_at: list[Any], read: Callable[..., Any]
) -> Callable[..., Any]:
    """A forward hook that takes the feature's decoder direction out of the module's output, scaled
    by its activation at each position, and notes where it fired in ``fired_at``. ``read``: what the
    SAE sees of the module's input, for input points (``InputView.read``)."""
    import torch

    from appliance.pipeline.models.architecture import block_output

    reads_input = params.hook_point.input
    direction = sae.W_dec[params.feature].detach()

    def hook(_module: Any, args: Any, kwargs: Any, output: Any) -> Any:
        out = block_output(output)
        source = read(args, kwargs) if reads_input else out
        with torch.no_grad():
            z = sae.encode(source.reshape(-1, source.shape[-1]).float())[:, params.feature]
        fired_at.append(z.reshape(out.shape[:-1]) > 0)
        value = out - (z.reshape(*out.shape[:-1], 1) * direction).to(out.dtype)
        return (value, *output[1:]) if isinstance(output, tuple) else value

    return hook
