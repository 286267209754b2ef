"""``sparse``: ReLU latents with an L1 penalty weighted by each latent's decoder norm (Anthropic's
April 2024 recipe, SAELens' "standard"), so shrinking activations by growing decoder rows does not
pay. Also the base of ``skip`` and ``transcoder``."""

from __future__ import annotations

import torch

from appliance.ml.sae.base import SAE, StepOutput


class _ReLUWithL1(torch.autograd.Function):
    """z = relu(pre) and the decoder-norm-weighted L1, mean over tokens, as one autograd node.

    Left to autograd, the L1 term's gradient (the norms broadcast over the batch) is materialised as
    a [batch, d_sae] tensor and summed with the decoder's gradient, and the fired latents need a mask
    and a reduction of their own: extra passes over the largest tensor of the step. Here the ReLU
    runs in place, one column sum gives the L1, the fired latents and the norms' gradient, and the
    backward adds the L1 gradient and masks in two passes.
    """

    @staticmethod
    def forward(ctx, pre, norms):  # type: ignore[override]
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
    def backward(ctx, grad_z, grad_l1, _grad_fired):  # type: ignore[override]
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

    def output(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return self.decode(z)

    def forward_train(self, x: torch.Tensor, target: torch.Tensor | None = None, stats: bool = True) -> StepOutput:
        z, l1, fired = _ReLUWithL1.apply(self.pre_activations(x), self.W_dec.norm(dim=1))
        x_hat = self.output(x, z)
        mse = self.mse(x_hat, x if target is None else target)
        sparsity = l1 * self.cfg.l1_coefficient
        l0 = torch.count_nonzero(z.detach()).float() / x.shape[0] if stats else None
        return StepOutput(x_hat, mse + sparsity, mse, sparsity, fired, l0)
