"""``skip``: a sparse SAE plus a learned scalar skip connection, x_hat = dec(enc(x)) + alpha * x, so
the dictionary need not spend latents on the part of x that passes through unchanged."""

from __future__ import annotations

import torch
from torch import nn

from appliance.pipeline.sae.base import SAEConfig
from appliance.pipeline.sae.sparse import SparseSAE


class SkipSAE(SparseSAE):
    def __init__(self, cfg: SAEConfig, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu") -> None:
        super().__init__(cfg, dtype, device)
        self.alpha = nn.Parameter(torch.zeros((), dtype=self.W_enc.dtype, device=self.W_enc.device))

    def output(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return self.decode(z) + self.alpha * x

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return self.output(x, self.encode(x))

    def extra_state_tensors(self) -> dict[str, torch.Tensor]:
        # Exported as a SAELens skip transcoder (d_out = d_in), whose skip is a matrix [d_out, d_in]:
        # alpha * I is the same map.
        eye = torch.eye(self.cfg.d_in, dtype=self.W_enc.dtype, device=self.W_enc.device)
        return {"W_skip": self.alpha.detach() * eye}
