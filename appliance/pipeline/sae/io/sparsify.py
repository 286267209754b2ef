"""EleutherAI sparsify coders (eai-sparsify 1.x, ``SparseCoder.save_to_disk``) read as our SAEs:
``cfg.json`` (its SparseCoderConfig plus ``d_in``) and ``sae.safetensors`` (``encoder.weight
[d_sae, d_in]``, ``encoder.bias``, ``W_dec [d_sae, d_in]``, ``b_dec``, and ``W_skip [d_in, d_in]``
with a skip connection).

A plain sparsify coder subtracts b_dec from its input, keeps the k largest ReLU'd pre-activations
and decodes them: exactly our ``topk``. ``multi_topk`` and ``normalize_decoder`` only shape training.
The settings that make it another model, which the appliance has no faithful equivalent of, are
refused by name rather than read as TopK.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from appliance.pipeline.sae import SAEConfig
from appliance.pipeline.sae.io import UnsupportedSAE

WEIGHTS = "sae.safetensors"
_TENSORS = frozenset({"encoder.weight", "encoder.bias", "W_dec", "b_dec"})
_DEFAULT_K = 32  # SparseCoderConfig.k
# Each setting's value that leaves a coder a TopK autoencoder, and what any other value means.
_PLAIN: dict[str, tuple[Any, str]] = {
    "activation": ("topk", "keeps the largest latent of each of k groups, not the k largest (no equivalent here)"),
    "skip_connection": (False, "adds a learned x @ W_skip.T to the output (no TopK SAE with a skip here)"),
    "transcode": (False, "a TopK transcoder: predicts another module's output from an uncentred input (none here)"),
    "signed": (False, "latents may be negative (no equivalent here)"),  # EleutherAI's sae before sparsify
}


def read(folder: Path, config: dict[str, Any]) -> tuple[SAEConfig, dict[str, torch.Tensor], dict[str, Any]]:
    """(config, tensors, metadata) of a sparsify folder; UnsupportedSAE naming the setting that makes it
    something other than a TopK autoencoder."""
    from safetensors.torch import load_file

    for key, (plain, meaning) in _PLAIN.items():
        if config.get(key, plain) != plain:
            raise UnsupportedSAE(f"{key}={config[key]!r}: this sparsify coder {meaning}")
    weights = load_file(str(folder / WEIGHTS))
    if unexpected := sorted(set(weights) - _TENSORS):
        raise UnsupportedSAE(f"{WEIGHTS} holds {unexpected}, which a sparsify TopK coder does not use")
    encoder = weights["encoder.weight"].float()  # [d_sae, d_in]
    d_sae, d_in = encoder.shape
    if config.get("d_in", d_in) != d_in:
        raise UnsupportedSAE(f"d_in={config['d_in']} in cfg.json, but the weights are {d_in} wide")
    cfg = SAEConfig("topk", d_in, d_sae, k=int(config.get("k") or _DEFAULT_K), apply_b_dec_to_input=True)
    tensors = {
        "W_enc": encoder.T.contiguous(),
        "b_enc": weights["encoder.bias"],
        "W_dec": weights["W_dec"],
        "b_dec": weights["b_dec"],
    }
    metadata = {"source_format": "sparsify", **{k: v for k, v in config.items() if isinstance(v, (str, int, float))}}
    return cfg, tensors, metadata
