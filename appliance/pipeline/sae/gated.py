"""``gated``: whether a latent fires and how strongly are decided by two paths that share the encoder
(Rajamanoharan et al. 2024; SAELens' ``gated``). With pi = (x - b_dec) @ W_enc:

    gate      = pi + b_gate > 0
    magnitude = relu(pi * exp(r_mag) + b_mag)        (SAELens: (x - b_dec) @ (W_enc * exp(r_mag)) + b_mag)
    z         = gate * magnitude

The L1 penalty (weighted by decoder norms) falls on relu(pi_gate) only, so it cannot shrink the
magnitudes the way it shrinks a ReLU SAE's activations; an auxiliary loss makes relu(pi_gate)
reconstruct x through a frozen copy of the decoder, so the gate path learns which latents a token needs
without moving the dictionary. Loss values equal SAELens' GatedTrainingSAE's; SAELens lets the
auxiliary term train W_dec and b_dec too, the paper (and we) do not. Decoder rows stay at unit norm
during training, as in the paper (``step.UNIT_DECODER`` says why).

There is no ``b_enc``: the gate and magnitude biases take its place. W_enc * exp(r_mag) scales columns,
so the magnitude path is the gate path's projection rescaled: one encoder matmul serves both.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from appliance.pipeline.sae.base import SAE, SAEConfig, StepOutput


class _GatedLatents(torch.autograd.Function):
    """From the shared projection pi [batch, d_sae]: the latents z, the gate path relu(pi + b_gate)
    and its decoder-norm-weighted L1 (mean over tokens), as one autograd node.

    Left to autograd, the two paths keep five [batch, d_sae] tensors for the backward (both
    pre-activations, two masks, the magnitudes) and broadcast the norms into a sixth. Here only z and
    the gate path are kept: z > 0 is where the magnitude path passes its gradient, relu(pi_gate) > 0
    where the gate path does, and r_mag's gradient needs pi * exp(r_mag), which equals z - b_mag
    wherever z > 0.
    """

    # ctx is Any: torch's FunctionCtx declares neither saved_tensors nor needs_input_grad.
    @staticmethod
    def forward(
        ctx: Any,
        pi: torch.Tensor,
        b_gate: torch.Tensor,
        r_mag: torch.Tensor,
        b_mag: torch.Tensor,
        norms: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        scale = r_mag.exp()
        gate_act = (pi + b_gate).clamp_min_(0)
        z = torch.addcmul(b_mag, pi, scale).clamp_min_(0).mul_(gate_act > 0)
        column_sums = gate_act.sum(dim=0)
        batch = pi.shape[0]
        l1 = column_sums @ norms / batch
        fired = z.sum(dim=0) > 0  # z >= 0: a float column sum is far cheaper than a bool any()
        ctx.mark_non_differentiable(fired)
        ctx.save_for_backward(z, gate_act, scale, b_mag, column_sums, norms)
        return z, gate_act, l1, fired

    @staticmethod
    def backward(
        ctx: Any,
        grad_z: torch.Tensor | None,
        grad_gate: torch.Tensor | None,
        grad_l1: torch.Tensor | None,
        _grad_fired: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
        z, gate_act, scale, b_mag, column_sums, norms = ctx.saved_tensors
        batch = z.shape[0]
        gate = torch.zeros_like(gate_act) if grad_gate is None else grad_gate
        if grad_l1 is not None:
            gate = gate.add(norms * (grad_l1 / batch))
        gate = torch.ops.aten.threshold_backward(gate, gate_act, 0)
        magnitude = torch.ops.aten.threshold_backward(torch.zeros_like(z) if grad_z is None else grad_z, z, 0)
        grad_b_mag = magnitude.sum(dim=0)
        # d z / d r_mag = pi * exp(r_mag) = z - b_mag where z > 0 (elsewhere the gradient is 0 anyway)
        grad_r_mag = (magnitude * z).sum(dim=0) - grad_b_mag * b_mag
        grad_norms = grad_l1 * column_sums / batch if grad_l1 is not None and ctx.needs_input_grad[4] else None
        return torch.addcmul(gate, magnitude, scale), gate.sum(dim=0), grad_r_mag, grad_b_mag, grad_norms


class GatedSAE(SAE):
    def __init__(self, cfg: SAEConfig, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu") -> None:
        super().__init__(cfg, dtype, device)
        del self.b_enc  # SAELens' gated SAEs have none either; reading it is a bug, not a zero
        d_sae = cfg.d_sae
        self.b_gate = nn.Parameter(torch.zeros(d_sae, dtype=dtype, device=device))
        self.r_mag = nn.Parameter(torch.zeros(d_sae, dtype=dtype, device=device))
        self.b_mag = nn.Parameter(torch.zeros(d_sae, dtype=dtype, device=device))

    def _centres(self) -> bool:
        return self.cfg.apply_b_dec_to_input

    def _project(self, x: torch.Tensor) -> torch.Tensor:
        """(x - b_dec) @ W_enc, as x @ W_enc - b_dec @ W_enc (see SAE.pre_activations)."""
        if self._centres():
            return torch.addmm(-(self.b_dec @ self.W_enc), x, self.W_enc)
        return x @ self.W_enc

    def pre_activations(self, x: torch.Tensor) -> torch.Tensor:
        """The gate's pre-activations: a latent can fire only where they are positive."""
        return self._project(x) + self.b_gate

    def _paths(self, pi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(gate pre-activations, latents) from the shared projection."""
        pi_gate = pi + self.b_gate
        magnitude = torch.relu(torch.addcmul(self.b_mag, pi, self.r_mag.exp()))
        return pi_gate, magnitude * (pi_gate > 0)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        # Centred before the matmul, in SAELens' order: the gate is a step at 0, and a token within
        # rounding of it would otherwise fire in one library and not the other. Training keeps
        # _project's order, whose b_dec gradient is cheaper.
        sae_in = x - self.b_dec if self._centres() else x
        return self._paths(sae_in @ self.W_enc)[1]

    def subset_encoder(self, idx: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
        """Both paths of latents ``idx`` only: each latent depends on its own column of W_enc."""
        W = self.W_enc.detach()[:, idx]
        b_dec = self.b_dec.detach() if self._centres() else None
        b_gate, b_mag = self.b_gate.detach()[idx], self.b_mag.detach()[idx]
        scale = self.r_mag.detach()[idx].exp()

        def encode(x: torch.Tensor) -> torch.Tensor:
            pi = (x if b_dec is None else x - b_dec) @ W  # centred first, as in encode
            return torch.relu(torch.addcmul(b_mag, pi, scale)) * (pi + b_gate > 0)

        return encode

    def forward_train(self, x: torch.Tensor, target: torch.Tensor | None = None, stats: bool = True) -> StepOutput:
        truth = x if target is None else target
        z, gate_act, l1, fired = _GatedLatents.apply(
            self._project(x), self.b_gate, self.r_mag, self.b_mag, self.W_dec.norm(dim=1)
        )
        x_hat = self.decode(z)
        mse = self.mse(x_hat, truth)
        sparsity = self.cfg.l1_coefficient * l1
        # The gate path alone reconstructs x through the frozen decoder: it trains the encoder only.
        aux = self.mse(torch.addmm(self.b_dec.detach(), gate_act, self.W_dec.detach()), truth)
        l0 = torch.count_nonzero(z.detach()).float() / x.shape[0] if stats else None
        return StepOutput(x_hat, mse + sparsity + aux, mse, sparsity, fired, l0)
