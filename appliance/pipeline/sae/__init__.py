"""Sparse autoencoders: one module per architecture behind the interface in ``base``."""

from __future__ import annotations

import torch

from appliance.pipeline.sae.base import SAE, Architecture, SAEConfig, StepOutput, sae_config
from appliance.pipeline.sae.batchtopk import BatchTopKSAE
from appliance.pipeline.sae.gated import GatedSAE
from appliance.pipeline.sae.jumprelu import JumpReLUSAE
from appliance.pipeline.sae.matryoshka import MatryoshkaBatchTopKSAE
from appliance.pipeline.sae.skip import SkipSAE
from appliance.pipeline.sae.sparse import SparseSAE
from appliance.pipeline.sae.topk import TopKSAE
from appliance.pipeline.sae.transcoder import Transcoder

CLASSES: dict[str, type[SAE]] = {
    "sparse": SparseSAE,
    "topk": TopKSAE,
    "jumprelu": JumpReLUSAE,
    "skip": SkipSAE,
    "transcoder": Transcoder,
    "batchtopk": BatchTopKSAE,
    "matryoshka_batchtopk": MatryoshkaBatchTopKSAE,
    "gated": GatedSAE,
}


def build(cfg: SAEConfig, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu") -> SAE:
    return CLASSES[cfg.architecture](cfg, dtype=dtype, device=device)


__all__ = ["SAE", "Architecture", "SAEConfig", "StepOutput", "build", "sae_config", "CLASSES"]
