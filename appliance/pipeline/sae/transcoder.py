"""``transcoder``: ReLU latents that read the MLP's input and reconstruct the MLP's output (d_out may
differ from d_in), trained with the decoder-norm-weighted L1 of ``sparse``. The target is passed to
``forward_train``. The decoder bias lives in the output space, so it is never subtracted from the
input, and it starts at the mean of the targets."""

from __future__ import annotations

import torch

from appliance.pipeline.sae.base import SAEConfig
from appliance.pipeline.sae.sparse import SparseSAE


class Transcoder(SparseSAE):
    def __init__(self, cfg: SAEConfig, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu") -> None:
        cfg.apply_b_dec_to_input = False
        super().__init__(cfg, dtype, device)

    def pre_activations(self, x: torch.Tensor) -> torch.Tensor:
        return torch.addmm(self.b_enc, x, self.W_enc)

    @torch.no_grad()
    def init_b_dec(self, target: torch.Tensor) -> None:
        self.b_dec.copy_(target.mean(dim=0))
