"""``matryoshka_batchtopk``: a BatchTopK SAE whose nested prefixes (latents [0, w) for each w of
``matryoshka_widths``) are each trained to reconstruct on their own (Bussmann et al. 2025; SAELens'
MatryoshkaBatchTopK). The loss is the sum over prefixes of each prefix's reconstruction MSE, with the
latents the batch's top-k chose over the whole dictionary, plus AuxK: the first prefix must carry the
most general features, so they do not split or get absorbed as the dictionary grows. Inference is the
BatchTopK's JumpReLU; the groups are kept for the feature browser (``prefix_group``).

Every prefix reconstruction comes from one ``embedding_bag``: each chosen latent is bagged by (token,
group), so each decoder row is read once, and one residual carried over the groups gives every prefix's
error (``_PrefixErrors``).
"""

from __future__ import annotations

from typing import Any

import torch

from appliance.contracts.matryoshka import default_widths, group_bounds, prefix_group, widths_problem
from appliance.pipeline.sae.base import SAEConfig, StepOutput
from appliance.pipeline.sae.batchtopk import BatchTopKSAE

__all__ = ["MatryoshkaBatchTopKSAE", "default_widths", "group_bounds", "prefix_group"]


class _PrefixErrors(torch.autograd.Function):
    """errors[g] = mean over tokens of |base - (parts[0] + ... + parts[g])|^2, and the last residual.

    With ``base`` = target - b_dec and ``parts[h]`` ([batch, d_out]) group h's share of the decode, these
    are every prefix's reconstruction errors. Left to autograd, the prefixes would be a cumulative sum
    over a [groups, batch, d_out] tensor, squared, summed, and run back through a flipped cumulative sum;
    here one residual is carried from group to group, and the backward walks back over the groups
    carrying the weighted sum of the residuals it has passed (d errors[g] / d residual_g = 2 residual_g /
    batch; a group's parts move every residual from its own on)."""

    # ctx is Any: torch's FunctionCtx declares no saved_tensors.
    @staticmethod
    def forward(ctx: Any, parts: torch.Tensor, base: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        groups, batch = parts.shape[:2]
        residual = base.clone()
        errors = []
        for g in range(groups):
            residual.sub_(parts[g])
            errors.append(residual.pow(2).sum() / batch)
        ctx.save_for_backward(parts, residual)
        return torch.stack(errors), residual

    @staticmethod
    def backward(
        ctx: Any, grad_errors: torch.Tensor | None, grad_residual: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        parts, last = ctx.saved_tensors
        groups, batch = parts.shape[:2]
        weights = (grad_errors if grad_errors is not None else parts.new_zeros(groups)) * (2 / batch)
        carried = grad_residual.clone() if grad_residual is not None else torch.zeros_like(last)
        residual = last.clone()
        grad_parts = torch.empty_like(parts)
        for h in reversed(range(groups)):
            carried.addcmul_(residual, weights[h])
            torch.neg(carried, out=grad_parts[h])
            if h:
                residual.add_(parts[h])
        return grad_parts, carried


class MatryoshkaBatchTopKSAE(BatchTopKSAE):
    group_ends: torch.Tensor  # a buffer (register_buffer), so declared for the type checker

    def __init__(self, cfg: SAEConfig, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu") -> None:
        super().__init__(cfg, dtype, device)
        widths = cfg.matryoshka_widths or default_widths(cfg.d_sae)  # SAEConfig fills it in; a copy may not
        if problem := widths_problem(widths, cfg.d_sae):
            raise ValueError(problem)
        self.widths = list(widths)
        # Where each group but the last ends: bucketize's boundaries. Derived from the config, so not
        # saved in checkpoints or exports (SAELens' files have no such tensor).
        self.register_buffer(
            "group_ends", torch.tensor(self.widths[:-1], dtype=torch.long, device=device), persistent=False
        )

    def prefix_errors(
        self, x: torch.Tensor, target: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(per-prefix MSE [groups], full reconstruction, pre-activations, kept values, their latents)."""
        target = x if target is None else target
        with torch.no_grad():  # the choice needs every pre-activation, the gradient only the chosen ones
            pre = self.pre_activations(x)
        _, tokens, latents = self.batch_select(pre)
        values = torch.relu(self.pick(pre, x, tokens, latents))
        batch, groups = x.shape[0], len(self.widths)
        # Bagged by (group, token): each group's share is then one contiguous [batch, d_out] block. The
        # bags must be in order for embedding_bag's offsets; sorting the k x batch chosen is cheap.
        bags, order = (torch.bucketize(latents, self.group_ends, right=True) * batch + tokens).sort()
        parts = self.bag_decode(values[order], latents[order], bags, groups * batch).view(groups, batch, -1)
        errors, residual = _PrefixErrors.apply(parts, target - self.b_dec)
        return errors, target - residual, pre, values, latents

    def forward_train(self, x: torch.Tensor, target: torch.Tensor | None = None, stats: bool = True) -> StepOutput:
        target = x if target is None else target
        errors, x_hat, pre, values, latents = self.prefix_errors(x, target)
        aux = self._aux_loss(pre, target - x_hat.detach(), x)
        # The full prefix's error is the MSE the run reports; the loss adds every inner prefix's.
        return self._step_output(x_hat, errors.sum() + aux, errors[-1], aux, values, latents, x.shape[0], stats)
