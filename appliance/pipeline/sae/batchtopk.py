"""``batchtopk``: the k x batch largest pre-activations of the whole batch stay (ReLU'd), so k is the
AVERAGE number of active latents per token: a token that needs more latents takes them from one that
needs fewer (Bussmann et al. 2024; SAELens' BatchTopK). The selection depends on the batch, so inference
cannot use it: training keeps a running global threshold, an exponential moving average of the smallest
activation each batch kept, and ``encode`` is a JumpReLU with that one threshold. SAELens saves these
SAEs as ``jumprelu`` with the threshold repeated per latent, and so does our export.

As in ``topk`` the decoder runs sparsely: the chosen latents are ordered by token and ``embedding_bag``
sums each token's decoder rows, however many it got.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from appliance.pipeline.sae.base import SAEConfig, StepOutput
from appliance.pipeline.sae.topk import TopKSAE

# batch_select's cut: estimated from this many pre-activations, to keep this many times the chosen.
SAMPLE = 1 << 16
CANDIDATES = 1.5


def _above_estimated_cut(values: torch.Tensor, n: int, d_sae: int) -> torch.Tensor | None:
    """Indices (ascending) of ``values`` above a cut that about CANDIDATES x n of them pass, when at least
    n do; None when too few do or the batch is too small for a sample to save anything. The sample is
    every step-th value with the step prime to d_sae, so it visits every latent and token evenly and
    draws no random numbers (a resumed training must draw the same ones as an uninterrupted one)."""
    total = values.numel()
    if total < 8 * SAMPLE or CANDIDATES * n > total / 4:
        return None
    step = total // SAMPLE
    while math.gcd(step, d_sae) != 1:
        step += 1
    sample = values[::step].float()
    rank = max(1, int((1 - CANDIDATES * n / total) * sample.numel()))
    cut = sample.kthvalue(rank).values
    above = (values > cut).nonzero().squeeze(1)  # a host sync, as any count of what passed is
    return above if above.numel() >= n else None


class BatchTopKSAE(TopKSAE):
    topk_threshold: torch.Tensor  # a buffer (register_buffer), so declared for the type checker

    def __init__(self, cfg: SAEConfig, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu") -> None:
        super().__init__(cfg, dtype, device)
        # Double, as in SAELens: steps of lr x (a small activation) vanish in an fp32 running average. A
        # buffer, so checkpoints carry it and a resumed run continues the same average.
        self.register_buffer("topk_threshold", torch.zeros((), dtype=torch.float64, device=device))

    # -- training: the batch's selection ----------------------------------------------------------
    def batch_select(self, pre: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(values >= 0, token, latent) of the k x batch largest pre-activations, ordered by token then
        latent. Taken from ``pre`` itself rather than its ReLU (SAELens' order): ReLU keeps the order, so
        the same latents carry the same values, and a pass over [batch, d_sae] is saved.

        A top-k over the whole flattened batch costs more than the encoder's matmul on a CPU. A cut
        estimated from an even sample of the batch keeps about CANDIDATES times as many as are chosen;
        when at least k x batch pass it, every one of the largest does, and the top-k runs over those
        few. When too few pass (a sample that missed the shape of the batch), it runs over all."""
        batch, d_sae = pre.shape
        values = pre.flatten()
        n = min(self.cfg.k * batch, values.numel())
        flat = _above_estimated_cut(values, n, d_sae)
        if flat is not None:
            values, picked = values[flat].topk(n, sorted=False)
            flat = flat[picked]
        else:
            values, flat = values.topk(n, sorted=False)
        flat, order = flat.sort()
        tokens = torch.div(flat, d_sae, rounding_mode="floor")
        return torch.relu(values[order]), tokens, flat - tokens * d_sae

    def bag_decode(self, values: torch.Tensor, latents: torch.Tensor, bags: torch.Tensor, n_bags: int) -> torch.Tensor:
        """[n_bags, d_out]: bag i = sum of values x decoder rows of the entries whose ``bags`` is i (no
        bias); ``bags`` must be non-decreasing."""
        counts = torch.bincount(bags, minlength=n_bags)
        offsets = counts.cumsum(0) - counts
        # Under bf16 autocast the values come out of the encoder matmul in bf16; embedding_bag is not
        # autocast and wants the weights' dtype.
        weights = values.to(self.W_dec.dtype)
        return F.embedding_bag(latents, self.W_dec, offsets, per_sample_weights=weights, mode="sum")

    def forward_train(self, x: torch.Tensor, target: torch.Tensor | None = None, stats: bool = True) -> StepOutput:
        target = x if target is None else target
        with torch.no_grad():  # the choice needs every pre-activation, the gradient only the chosen ones
            pre = self.pre_activations(x)
        _, tokens, latents = self.batch_select(pre)
        values = torch.relu(self.pick(pre, x, tokens, latents))
        x_hat = self.bag_decode(values, latents, tokens, x.shape[0]) + self.b_dec
        mse = self.mse(x_hat, target)
        aux = self._aux_loss(pre, target - x_hat.detach(), x)
        return self._step_output(x_hat, mse + aux, mse, aux, values, latents, x.shape[0], stats)

    def _step_output(
        self,
        x_hat: torch.Tensor,
        loss: torch.Tensor,
        mse: torch.Tensor,
        aux: torch.Tensor,
        values: torch.Tensor,
        latents: torch.Tensor,
        batch: int,
        stats: bool,
    ) -> StepOutput:
        # The threshold learns from training passes only: a pass without gradients (held-out loss,
        # explained variance) must leave the SAE as it found it, like the dead-latent counter.
        if torch.is_grad_enabled():
            self.update_threshold(values)
        with torch.no_grad():
            active = values > 0
            fired = torch.zeros(self.cfg.d_sae, dtype=torch.bool, device=values.device)
            fired[latents[active]] = True
            l0 = active.sum(dtype=torch.float32) / batch if stats else None
        return StepOutput(x_hat, loss, mse, aux, fired, l0)

    @torch.no_grad()
    def update_threshold(self, values: torch.Tensor) -> None:
        """threshold <- (1 - lr) threshold + lr x (the smallest positive value kept), SAELens' rule, in
        double and outside autocast; unchanged when nothing positive was kept. No host sync: on a GPU
        the step does not wait for it."""
        with torch.autocast(device_type=values.device.type, enabled=False):
            kept = values.detach()
            smallest = kept.masked_fill(kept <= 0, float("inf")).min().to(torch.float64)
            lr = self.cfg.topk_threshold_lr
            moved = (1 - lr) * self.topk_threshold + lr * smallest
            self.topk_threshold.copy_(torch.where(torch.isfinite(smallest), moved, self.topk_threshold))

    # -- inference: a JumpReLU with the learned threshold -----------------------------------------
    @property
    def threshold(self) -> torch.Tensor:
        """The inference threshold in the weights' dtype: what the exported file holds, so our latents
        and SAELens' compare the same numbers."""
        return self.topk_threshold.to(self.W_enc.dtype)

    # The threshold is >= 0, so pre > threshold already implies pre > 0 (SAELens' relu(pre) gated by it).
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        pre = self.pre_activations(x)
        return pre * (pre > self.threshold)

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))

    def subset_encoder(self, idx: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
        """Each latent depends on its own pre-activation alone at inference: no dense encode."""
        W, b = self._subset_affine(idx)
        threshold = self.threshold.detach()

        def encode(x: torch.Tensor) -> torch.Tensor:
            pre = torch.addmm(b, x, W)
            return pre * (pre > threshold)

        return encode

    def extra_state_tensors(self) -> dict[str, torch.Tensor]:
        """SAELens' inference file: the one threshold repeated per latent (its
        process_state_dict_for_saving_inference)."""
        return {"threshold": self.threshold.detach().expand(self.cfg.d_sae).clone()}
