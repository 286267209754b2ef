"""``topk``: the k largest pre-activations per token stay (ReLU'd), the rest are zero (Gao et al.
2024; EleutherAI sparsify). No sparsity penalty is needed; AuxK revives dead latents by asking the
top ``aux_k`` dead ones to reconstruct the residual error.

The decoder runs sparsely: ``embedding_bag`` sums the k chosen decoder rows weighted by their
activations, so neither the forward nor the backward pass touches the d_sae - k silent latents (the
dense ``z @ W_dec`` would cost as much as the encoder).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from appliance.pipeline.sae.base import SAE, StepOutput
from appliance.pipeline.sae.sparse_grad import picked, token_of_each


class TopKSAE(SAE):
    def select(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(values [B, k] >= 0, indices [B, k]) of the active latents."""
        values, indices = self.pre_activations(x).topk(self.cfg.k, dim=-1, sorted=False)
        return torch.relu(values), indices

    def sparse_decode(self, values: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
        # Under bf16 autocast the values come out of the encoder matmul in bf16; embedding_bag is not
        # autocast and wants the weights' dtype.
        return (
            F.embedding_bag(indices, self.W_dec, per_sample_weights=values.to(self.W_dec.dtype), mode="sum")
            + self.b_dec
        )

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        values, indices = self.select(x)
        return torch.zeros(x.shape[0], self.cfg.d_sae, dtype=values.dtype, device=x.device).scatter_(1, indices, values)

    def subset_encoder(self, idx: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
        """A latent is active when its pre-activation reaches the k-th largest: no dense scatter."""
        W, b = self._subset_affine(None)
        k = self.cfg.k

        def encode(x: torch.Tensor) -> torch.Tensor:
            pre = torch.addmm(b, x, W)
            kth = pre.topk(k, dim=-1, sorted=False).values.min(dim=-1, keepdim=True).values
            chosen = pre[:, idx]
            return torch.relu(chosen) * (chosen >= kth)

        return encode

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return self.sparse_decode(*self.select(x))

    def pick(self, pre: torch.Tensor, x: torch.Tensor, tokens: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
        """``pre[tokens, latents]`` with gradients for the encoder, computed from the pairs alone (see
        sparse_grad); ``pre`` = ``pre_activations(x)`` computed without a graph."""
        return picked(pre, x, self.W_enc, self.encoder_bias(), tokens, latents)

    def forward_train(self, x: torch.Tensor, target: torch.Tensor | None = None, stats: bool = True) -> StepOutput:
        target = x if target is None else target
        with torch.no_grad():  # the choice needs every pre-activation, the gradient only the chosen ones
            pre = self.pre_activations(x)
        _, indices = pre.topk(self.cfg.k, dim=-1, sorted=False)
        tokens = token_of_each(x.shape[0], self.cfg.k, x.device)
        values = torch.relu(self.pick(pre, x, tokens, indices.flatten())).view_as(indices)
        x_hat = self.sparse_decode(values, indices)
        mse = self.mse(x_hat, target)
        aux = self._aux_loss(pre, target - x_hat.detach(), x)
        with torch.no_grad():
            active = values > 0  # [batch, k]: small
            fired = torch.zeros(self.cfg.d_sae, dtype=torch.bool, device=x.device)
            fired[indices[active]] = True
            l0 = active.sum(dim=-1, dtype=torch.float32).mean() if stats else None
        return StepOutput(x_hat, mse + aux, mse, aux, fired, l0)

    def _aux_loss(self, pre: torch.Tensor, error: torch.Tensor, x: torch.Tensor | None = None) -> torch.Tensor:
        """AuxK: the top dead latents reconstruct what the live ones missed (normalised by the error's
        variance, as in Gao et al.); zero when nothing is dead or the coefficient is 0. With ``x``, ``pre``
        has no graph and the chosen values get their gradient through ``pick``."""
        dead = self.dead
        n_dead = int(dead.sum())
        if self.cfg.aux_k_coefficient <= 0 or n_dead == 0:
            return pre.new_zeros(())
        k_aux = min(self.cfg.aux_k or self.cfg.d_in // 2, n_dead)
        masked = pre.masked_fill(~dead, float("-inf"))
        values, indices = masked.topk(k_aux, dim=-1, sorted=False)
        if x is not None:
            values = self.pick(pre, x, token_of_each(x.shape[0], k_aux, x.device), indices.flatten()).view_as(indices)
        error_hat = F.embedding_bag(indices, self.W_dec, per_sample_weights=torch.relu(values), mode="sum")
        scale = (error - error.mean(dim=0)).pow(2).sum(dim=-1).mean().clamp_min(1e-8)
        return self.cfg.aux_k_coefficient * (error_hat - error).pow(2).sum(dim=-1).mean() / scale
