"""The interface every SAE architecture implements, and what they share.

Weights follow the SAELens layout so export is a rename, not a transform: ``W_enc [d_in, d_sae]``,
``b_enc [d_sae]``, ``W_dec [d_sae, d_out]``, ``b_dec [d_out]`` (``d_out == d_in`` except for
transcoders). ``forward`` returns everything a training step needs; ``encode``/``decode`` are what
feature discovery and steering use.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from appliance.contracts.hyperparameters import EncoderType, Hyperparameters, l1_coefficient
from appliance.contracts.matryoshka import default_widths

Architecture = EncoderType
# The one set of defaults: what the API gives a training that names none (GET /api/training/defaults).
# An SAE built here without a training (tests, benches, loaded files) gets the same numbers, so the two
# cannot drift apart.
_DEFAULTS = Hyperparameters()


@dataclass
class SAEConfig:
    architecture: Architecture
    d_in: int
    d_sae: int
    d_out: int | None = None  # transcoders: the MLP output width; others: d_in
    k: int = _DEFAULTS.k  # topk: active latents per token; batchtopk, matryoshka_batchtopk: their average
    topk_threshold_lr: float = _DEFAULTS.topk_threshold_lr  # batchtopk: the EMA rate of its inference threshold
    # matryoshka_batchtopk: the nested prefix sizes (None: appliance.contracts.matryoshka.default_widths)
    matryoshka_widths: list[int] | None = None
    # sparse/skip/transcoder: decoder-norm-weighted L1; negative (the default): the architecture's own
    l1_coefficient: float = -1.0
    l0_coefficient: float = _DEFAULTS.l0_coefficient  # jumprelu: weight of the L0 term
    jumprelu_init_threshold: float = _DEFAULTS.jumprelu_init_threshold
    jumprelu_bandwidth: float = _DEFAULTS.jumprelu_bandwidth
    aux_k: int | None = None  # topk: latents used by the AuxK loss (default: d_in // 2)
    aux_k_coefficient: float = _DEFAULTS.aux_k_coefficient  # 0 turns AuxK off
    dead_tokens: int = _DEFAULTS.dead_tokens  # a latent silent for this many tokens is dead
    ghost_grads: bool = _DEFAULTS.ghost_grads  # L1 architectures: dead latents learn from the residual error
    apply_b_dec_to_input: bool = True
    # transcoders: a linear skip W_skip [d_out, d_in] added to the output (SAELens' skip transcoders,
    # imported; never trained here)
    skip_matrix: bool = False

    def __post_init__(self) -> None:
        if self.l1_coefficient < 0:
            self.l1_coefficient = l1_coefficient(_DEFAULTS, self.architecture)
        if self.architecture == "matryoshka_batchtopk" and self.matryoshka_widths is None:
            self.matryoshka_widths = default_widths(self.d_sae)

    @property
    def output_width(self) -> int:
        return self.d_out or self.d_in


def sae_config(architecture: Architecture, d_in: int, hp: Hyperparameters, d_out: int | None = None) -> SAEConfig:
    """The one path from a training's settings to its SAE: width from ``d_sae`` or the expansion
    factor, every loss coefficient from ``hp``."""
    return SAEConfig(
        architecture,
        d_in,
        hp.d_sae or hp.expansion_factor * d_in,
        d_out=d_out,
        k=hp.k,
        topk_threshold_lr=hp.topk_threshold_lr,
        matryoshka_widths=hp.matryoshka_widths,
        l1_coefficient=l1_coefficient(hp, architecture),
        l0_coefficient=hp.l0_coefficient,
        jumprelu_init_threshold=hp.jumprelu_init_threshold,
        jumprelu_bandwidth=hp.jumprelu_bandwidth,
        aux_k_coefficient=hp.aux_k_coefficient,
        dead_tokens=hp.dead_tokens,
        ghost_grads=hp.ghost_grads,
    )


@dataclass
class StepOutput:
    """What one forward pass produced: the reconstruction and the loss terms (tensors with grad)."""

    x_hat: torch.Tensor
    loss: torch.Tensor
    mse: torch.Tensor
    sparsity: torch.Tensor  # the architecture's sparsity term (L1, L0 or AuxK), already weighted
    fired: torch.Tensor  # [d_sae] bool: latents that fired in this batch (no grad)
    l0: torch.Tensor | None = None  # mean active latents per token; only when asked (a full pass)


class SAE(nn.Module):
    """Shared parameters, initialisation and the dead-latent counter."""

    tokens_since_fired: torch.Tensor  # a buffer (register_buffer), so declared for the type checker

    def __init__(self, cfg: SAEConfig, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu"):
        super().__init__()
        self.cfg = cfg
        d_in, d_sae, d_out = cfg.d_in, cfg.d_sae, cfg.output_width
        self.W_enc = nn.Parameter(torch.empty(d_in, d_sae, dtype=dtype, device=device))
        self.b_enc = nn.Parameter(torch.zeros(d_sae, dtype=dtype, device=device))
        self.W_dec = nn.Parameter(torch.empty(d_sae, d_out, dtype=dtype, device=device))
        self.b_dec = nn.Parameter(torch.zeros(d_out, dtype=dtype, device=device))
        # Tokens since each latent last fired (a buffer: saved in checkpoints, not trained).
        self.register_buffer("tokens_since_fired", torch.zeros(d_sae, dtype=torch.long, device=device))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Decoder rows of unit norm in random directions, encoder = decoder transposed (tied init,
        as in Anthropic's and SAELens' recipes), biases zero."""
        with torch.no_grad():
            W = torch.randn_like(self.W_dec)
            W /= W.norm(dim=1, keepdim=True)
            self.W_dec.copy_(W)
            if self.cfg.d_in == self.cfg.output_width:
                self.W_enc.copy_(W.T)
            else:
                enc = torch.randn_like(self.W_enc)
                self.W_enc.copy_(enc / enc.norm(dim=0, keepdim=True))

    # -- the interface ----------------------------------------------------------------------------
    def pre_activations(self, x: torch.Tensor) -> torch.Tensor:
        """(x - b_dec) @ W_enc + b_enc, computed as x @ W_enc + (b_enc - b_dec @ W_enc): the same
        numbers, but b_dec's gradient through the encoder becomes a matrix-vector product instead of
        a full [batch, d_sae] x [d_sae, d_in] matmul, and x is never copied."""
        return torch.addmm(self.encoder_bias(), x, self.W_enc)

    def encoder_bias(self) -> torch.Tensor:
        """The bias of the pre-activations as an affine map of x: b_enc - b_dec @ W_enc when the input is
        centred on b_dec (see pre_activations), else b_enc."""
        if self.cfg.apply_b_dec_to_input and self.cfg.d_in == self.cfg.output_width:
            return self.b_enc - self.b_dec @ self.W_enc
        return self.b_enc

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Latent activations [batch, d_sae] (dense)."""
        raise NotImplementedError

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return torch.addmm(self.b_dec, z, self.W_dec)

    def _subset_affine(self, idx: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """(W, b) with x @ W + b the pre-activations of latents ``idx`` (None: all, no copy)."""
        W = self.W_enc.detach() if idx is None else self.W_enc.detach()[:, idx]
        b = self.b_enc.detach() if idx is None else self.b_enc.detach()[idx]
        if self.cfg.apply_b_dec_to_input and self.cfg.d_in == self.cfg.output_width:
            b = b - self.b_dec.detach() @ W
        return W, b

    def subset_encoder(self, idx: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
        """x -> latents ``idx`` only ([batch, len(idx)]), with what does not depend on x computed
        once: steering reads a few latents at every generated token. Architectures whose latent
        depends on its own pre-activation alone skip the full [batch, d_sae] encode; the default
        (and TopK, whose latents depend on each other) encodes densely."""
        return lambda x: self.encode(x)[:, idx]

    def forward_train(self, x: torch.Tensor, target: torch.Tensor | None = None, stats: bool = True) -> StepOutput:
        """Loss terms for a batch; ``stats`` adds L0, which costs a pass over [batch, d_sae] (counting
        is slow on CPUs), so a training loop asks for it only on the steps it logs."""
        raise NotImplementedError

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))

    # -- shared helpers ---------------------------------------------------------------------------
    @staticmethod
    def mse(x_hat: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Squared error summed over features, averaged over tokens (SAELens' 'mse' convention)."""
        return (x_hat - target).pow(2).sum(dim=-1).mean()

    @torch.no_grad()
    def note_fired(self, fired: torch.Tensor, tokens: int) -> None:
        self.tokens_since_fired += tokens
        self.tokens_since_fired[fired] = 0

    @property
    def dead(self) -> torch.Tensor:
        return self.tokens_since_fired >= self.cfg.dead_tokens

    @torch.no_grad()
    def init_b_dec(self, x: torch.Tensor) -> None:
        """Start the decoder bias at the data's mean, so early reconstructions are not off-centre."""
        if self.cfg.d_in == self.cfg.output_width:
            self.b_dec.copy_(x.mean(dim=0))

    @torch.no_grad()
    def normalize_decoder(self) -> None:
        """Unit-norm decoder rows (architectures whose sparsity term does not pay for the norm)."""
        self.W_dec.div_(self.W_dec.norm(dim=1, keepdim=True).clamp_min(1e-8))

    @torch.no_grad()
    def remove_parallel_gradient(self) -> None:
        """Drop the part of W_dec's gradient that would only change row norms (kept at 1)."""
        if self.W_dec.grad is not None:
            parallel = (self.W_dec.grad * self.W_dec).sum(dim=1, keepdim=True)
            self.W_dec.grad -= parallel * self.W_dec

    @torch.no_grad()
    def fold_scaling(self, scale_in: float, scale_out: float) -> None:
        """Make an SAE trained on scaled activations (x * scale_in -> target * scale_out) work on raw
        ones: W_enc * scale_in, W_dec / scale_out, b_dec / scale_out. Latent values, and so TopK
        choices and JumpReLU thresholds, are unchanged (SAELens folds its normalisation the same way)."""
        self.W_enc.mul_(scale_in)
        self.W_dec.div_(scale_out)
        self.b_dec.div_(scale_out)
        if self.cfg.apply_b_dec_to_input and self.cfg.d_in == self.cfg.output_width and scale_in != scale_out:
            raise ValueError("an SAE that centres its input on b_dec needs one scale for input and output")

    def extra_state_tensors(self) -> dict[str, torch.Tensor]:
        """Architecture-specific tensors for export (threshold, W_skip)."""
        return {}
