"""``sparse``: ReLU latents with an L1 penalty weighted by each latent's decoder norm (Anthropic's
April 2024 recipe, SAELens' "standard"), so shrinking activations by growing decoder rows does not
pay. Also the base of ``skip`` and ``transcoder``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from appliance.pipeline.sae.base import SAE, StepOutput


class _ReLUWithL1(torch.autograd.Function):
    """z = relu(pre) and the decoder-norm-weighted L1, mean over tokens, as one autograd node.

    Left to autograd, the L1 term's gradient (the norms broadcast over the batch) is materialised as
    a [batch, d_sae] tensor and summed with the decoder's gradient, and the fired latents need a mask
    and a reduction of their own: extra passes over the largest tensor of the step. Here the ReLU
    runs in place, one column sum gives the L1, the fired latents and the norms' gradient, and the
    backward adds the L1 gradient and masks in two passes.
    """

    # ctx is Any: torch's FunctionCtx declares neither saved_tensors nor needs_input_grad.
    @staticmethod
    def forward(ctx: Any, pre: torch.Tensor, norms: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        z = pre.clamp_min_(0)  # in place: the encoder's output is needed by nothing else
        ctx.mark_dirty(pre)
        column_sums = z.sum(dim=0)
        batch = pre.shape[0]
        ctx.save_for_backward(z, column_sums, norms)
        l1 = column_sums @ norms / batch
        fired = column_sums > 0
        ctx.mark_non_differentiable(fired)
        return z, l1, fired

    @staticmethod
    def backward(
        ctx: Any, grad_z: torch.Tensor | None, grad_l1: torch.Tensor | None, _grad_fired: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        z, column_sums, norms = ctx.saved_tensors
        batch = z.shape[0]
        grad = torch.zeros_like(z) if grad_z is None else grad_z
        if grad_l1 is not None:
            grad = grad.add(norms * (grad_l1 / batch))
        grad_norms = grad_l1 * column_sums / batch if grad_l1 is not None and ctx.needs_input_grad[1] else None
        return torch.ops.aten.threshold_backward(grad, z, 0), grad_norms


class SparseSAE(SAE):
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.pre_activations(x))

    def subset_encoder(self, idx: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
        W, b = self._subset_affine(idx)
        return lambda x: torch.relu(torch.addmm(b, x, W))

    def output(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return self.decode(z)

    def forward_train(self, x: torch.Tensor, target: torch.Tensor | None = None, stats: bool = True) -> StepOutput:
        pre = self.pre_activations(x)
        dead = self.dead if self.cfg.ghost_grads else None
        # Copied before the fused ReLU clamps ``pre`` in place.
        dead_pre = pre[:, dead] if dead is not None and bool(dead.any()) else None
        z, l1, fired = _ReLUWithL1.apply(pre, self.W_dec.norm(dim=1))
        x_hat = self.output(x, z)
        truth = x if target is None else target
        mse = self.mse(x_hat, truth)
        sparsity = l1 * self.cfg.l1_coefficient
        loss = mse + sparsity
        if dead_pre is not None:
            loss = loss + self._ghost_loss(dead_pre, self.W_dec[dead], truth - x_hat, mse)
        l0 = torch.count_nonzero(z.detach()).float() / x.shape[0] if stats else None
        return StepOutput(x_hat, loss, mse, sparsity, fired, l0)

    @staticmethod
    def _ghost_loss(
        dead_pre: torch.Tensor, dead_dec: torch.Tensor, error: torch.Tensor, mse: torch.Tensor
    ) -> torch.Tensor:
        """Ghost grads: exp(pre) of the dead latents, decoded and scaled to half the error's norm,
        regress the residual error; the term is rescaled to the size of the MSE so it neither
        dominates nor vanishes. Only the dead latents' weights get its gradient."""
        error = error.detach()
        ghost = torch.exp(dead_pre) @ dead_dec
        scale = error.norm(dim=-1) / (2 * ghost.norm(dim=-1) + 1e-6)
        ghost = ghost * scale.unsqueeze(-1).detach()
        spread = (error - error.mean(dim=0)).pow(2).sum(dim=-1, keepdim=True).sqrt()
        per_token = (ghost - error).pow(2) / (spread + 1e-6)
        rescale = (mse / (per_token.sum(dim=-1).mean() + 1e-6)).detach()
        return rescale * per_token.sum(dim=-1).mean()
