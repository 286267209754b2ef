"""``jumprelu``: a latent passes its pre-activation only above a learned per-latent threshold
(Rajamanoharan et al. 2024, Gemma Scope). The step has no gradient, so threshold gradients come
from a straight-through estimator with a rectangle kernel of width ``jumprelu_bandwidth``; the
sparsity term is the L0 itself, made differentiable the same way.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from appliance.pipeline.sae.base import SAE, SAEConfig, StepOutput


class _JumpReLUWithL0(torch.autograd.Function):
    """z = pre * H(pre - theta) and the batch-mean L0 as one autograd node.

    Only pre-activations within half a bandwidth of their threshold get a threshold gradient, and
    they are few: they are gathered by index instead of weighting the whole [batch, d_sae] tensor.
    The L0 value itself is counted only when asked (``stats``); its gradient never needs it.
    """

    # ctx is Any: torch's FunctionCtx declares neither saved_tensors nor our bandwidth.
    @staticmethod
    def forward(
        ctx: Any, pre: torch.Tensor, threshold: torch.Tensor, bandwidth: float, stats: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        mask = pre > threshold
        ctx.save_for_backward(pre, threshold, mask)
        ctx.bandwidth = bandwidth
        l0 = mask.sum(dtype=pre.dtype) / pre.shape[0] if stats else pre.new_zeros(())
        return pre * mask, l0

    @staticmethod
    def backward(
        ctx: Any, grad_z: torch.Tensor, grad_l0: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, None, None]:
        pre, threshold, mask = ctx.saved_tensors
        half = ctx.bandwidth / 2
        rows, cols = ((pre > threshold - half) & (pre < threshold + half)).nonzero(as_tuple=True)
        # d z / d theta = -(theta / bw) * rect; d mean-L0 / d theta = -(1 / bw) * rect / batch.
        weight = grad_z[rows, cols] * threshold[cols] + grad_l0 / pre.shape[0]
        grad_threshold = torch.zeros_like(threshold).index_add_(0, cols, weight) / -ctx.bandwidth
        return grad_z * mask, grad_threshold, None, None


class JumpReLUSAE(SAE):
    def __init__(self, cfg: SAEConfig, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu") -> None:
        super().__init__(cfg, dtype, device)
        self.log_threshold = nn.Parameter(
            torch.full(
                (self.cfg.d_sae,),
                math.log(self.cfg.jumprelu_init_threshold),
                dtype=self.W_enc.dtype,
                device=self.W_enc.device,
            )
        )

    @property
    def threshold(self) -> torch.Tensor:
        return self.log_threshold.exp()

    # Thresholds are positive, so pre > threshold already implies pre > 0: no ReLU pass is needed.
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        pre = self.pre_activations(x)
        return pre * (pre > self.threshold)

    def subset_encoder(self, idx: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
        W, b = self._subset_affine(idx)
        threshold = self.threshold.detach()[idx]

        def encode(x: torch.Tensor) -> torch.Tensor:
            pre = torch.addmm(b, x, W)
            return pre * (pre > threshold)

        return encode

    def forward_train(self, x: torch.Tensor, target: torch.Tensor | None = None, stats: bool = True) -> StepOutput:
        pre = self.pre_activations(x)
        z, l0_term = _JumpReLUWithL0.apply(pre, self.threshold, self.cfg.jumprelu_bandwidth, stats)
        x_hat = self.decode(z)
        mse = self.mse(x_hat, x if target is None else target)
        sparsity = self.cfg.l0_coefficient * l0_term
        with torch.no_grad():
            fired = z.sum(dim=0) > 0  # z >= 0: a float column sum is far cheaper than a bool any()
        return StepOutput(x_hat, mse + sparsity, mse, sparsity, fired, l0_term.detach() if stats else None)

    def extra_state_tensors(self) -> dict[str, torch.Tensor]:
        return {"threshold": self.threshold.detach()}
