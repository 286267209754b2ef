"""``transcoder``: ReLU latents that read the MLP's input and reconstruct the MLP's output (d_out may
differ from d_in), trained with the decoder-norm-weighted L1 of ``sparse``. The target is passed to
``forward_train``. The decoder bias lives in the output space, so it is never subtracted from the
input, and it starts at the mean of the targets.

An imported SAELens skip transcoder also carries a linear skip ``W_skip [d_out, d_in]`` (SAELens'
orientation: output = decode(z) + x @ W_skip.T); ``cfg.skip_matrix`` adds it. Its output then depends
on x as well as z, so everything that needs the reconstruction goes through ``output``/``reconstruct``.
"""

from __future__ import annotations

import torch
from torch import nn

from appliance.pipeline.sae.base import SAEConfig
from appliance.pipeline.sae.sparse import SparseSAE


class Transcoder(SparseSAE):
    W_skip: nn.Parameter | None

    def __init__(self, cfg: SAEConfig, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu") -> None:
        cfg.apply_b_dec_to_input = False
        super().__init__(cfg, dtype, device)
        skip = torch.zeros(cfg.output_width, cfg.d_in, dtype=dtype, device=device)
        self.W_skip = nn.Parameter(skip) if cfg.skip_matrix else None

    def pre_activations(self, x: torch.Tensor) -> torch.Tensor:
        return torch.addmm(self.b_enc, x, self.W_enc)

    def output(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        out = self.decode(z)
        return out if self.W_skip is None else torch.addmm(out, x, self.W_skip.T)

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return self.output(x, self.encode(x))

    @torch.no_grad()
    def init_b_dec(self, target: torch.Tensor) -> None:
        self.b_dec.copy_(target.mean(dim=0))

    def extra_state_tensors(self) -> dict[str, torch.Tensor]:
        return {} if self.W_skip is None else {"W_skip": self.W_skip.detach()}
