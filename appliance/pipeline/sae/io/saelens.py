"""SAEs on disk in the SAELens v6 layout (export and import), and import of EleutherAI sparsify SAEs.

SAELens: a folder with ``cfg.json``, ``sae_weights.safetensors`` (``W_enc [d_in, d_sae]``, ``b_enc``,
``W_dec [d_sae, d_out]``, ``b_dec``, plus ``threshold`` for jumprelu and ``W_skip`` for skip
connections) and ``sparsity.safetensors`` (log10 firing frequency per latent). Our architectures map
to SAELens names: sparse -> standard, topk -> topk, jumprelu -> jumprelu, transcoder -> transcoder,
skip -> standard with ``W_skip`` (``metadata.mistudio_architecture`` says "skip").

sparsify: ``cfg.json`` (``d_in`` in the layer config, ``num_latents`` or ``expansion_factor``, ``k``)
and ``sae.safetensors`` with ``encoder.weight [d_sae, d_in]``, ``encoder.bias``, ``W_dec``, ``b_dec``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from appliance.pipeline.sae import CLASSES, SAE, Architecture, SAEConfig, build

TO_SAELENS: dict[Architecture, str] = {
    "sparse": "standard",
    "topk": "topk",
    "jumprelu": "jumprelu",
    "transcoder": "transcoder",
    "skip": "standard",
}
FROM_SAELENS: dict[str, Architecture] = {
    "standard": "sparse",
    "topk": "topk",
    "jumprelu": "jumprelu",
    "transcoder": "transcoder",
    "skip_transcoder": "transcoder",
}
WEIGHTS = "sae_weights.safetensors"
SPARSITY = "sparsity.safetensors"


class UnsupportedSAE(ValueError):
    pass


def export(sae: SAE, folder: Path, metadata: dict[str, Any], log_sparsity: torch.Tensor | None = None) -> Path:
    """Write ``sae`` as a SAELens v6 folder. ``metadata``: model_name, hook_name, context_size,
    dataset_path, ... (SAELens' names)."""
    from safetensors.torch import save_file

    cfg = sae.cfg
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {
        name: getattr(sae, name).detach().float().contiguous().cpu() for name in ("W_enc", "b_enc", "W_dec", "b_dec")
    }
    tensors.update({k: v.float().contiguous().cpu() for k, v in sae.extra_state_tensors().items()})
    save_file(tensors, str(folder / WEIGHTS))
    if log_sparsity is not None:
        save_file({"sparsity": log_sparsity.float().contiguous().cpu()}, str(folder / SPARSITY))
    config: dict[str, Any] = {
        "architecture": TO_SAELENS[cfg.architecture],
        "d_in": cfg.d_in,
        "d_sae": cfg.d_sae,
        "dtype": "float32",
        "device": "cpu",
        "apply_b_dec_to_input": bool(cfg.apply_b_dec_to_input),
        "normalize_activations": "none",
        "reshape_activations": "none",
        "metadata": {"sae_lens_version": "6", "mistudio_architecture": cfg.architecture, **metadata},
    }
    if cfg.architecture == "topk":
        config["k"] = cfg.k
    if cfg.architecture == "transcoder":
        config["d_out"] = cfg.output_width
    (folder / "cfg.json").write_text(json.dumps(config, indent=2))
    return folder


def load_folder(folder: Path) -> tuple[SAE, dict[str, Any]]:
    """An SAE from a SAELens or sparsify folder, and its metadata."""
    from safetensors.torch import load_file

    config = json.loads((folder / "cfg.json").read_text())
    if (folder / WEIGHTS).is_file():
        weights = load_file(str(folder / WEIGHTS))
        metadata = dict(config.get("metadata") or {})
        arch_name = metadata.get("mistudio_architecture") or FROM_SAELENS.get(config.get("architecture", "standard"))
        if arch_name is None:
            raise UnsupportedSAE(f"SAELens architecture {config.get('architecture')!r} is not supported")
        if arch_name not in CLASSES:  # a metadata name from a newer or foreign writer
            raise UnsupportedSAE(f"architecture {arch_name!r} is not supported")
        if config.get("normalize_activations", "none") not in ("none", None):
            raise UnsupportedSAE(
                "SAEs that normalise their inputs at run time are not supported; fold the "
                "scaling factor into the weights first"
            )
        d_in, d_sae = weights["W_enc"].shape
        cfg = SAEConfig(
            arch_name,
            d_in,
            d_sae,
            d_out=weights["W_dec"].shape[1],
            k=int(config.get("k") or 32),
            apply_b_dec_to_input=bool(config.get("apply_b_dec_to_input", True)),
        )
        tensors = {name: weights[name] for name in ("W_enc", "b_enc", "W_dec", "b_dec")}
        if arch_name == "jumprelu":
            tensors["log_threshold"] = weights["threshold"].clamp_min(1e-12).log()
        if arch_name == "skip":
            tensors["alpha"] = torch.diagonal(weights["W_skip"]).mean()
        if "W_skip" in weights and arch_name != "skip":
            raise UnsupportedSAE("Skip transcoders (W_skip) are not supported yet")
        for key in ("model_name", "hook_name", "context_size", "dataset_path"):
            if key in config and key not in metadata:  # SAELens before v6 kept these at the top level
                metadata[key] = config[key]
    elif (folder / "sae.safetensors").is_file():
        weights = load_file(str(folder / "sae.safetensors"))
        encoder = weights["encoder.weight"]  # [d_sae, d_in]
        d_sae, d_in = encoder.shape
        k = int(config.get("k") or 32)
        # sparsify's TopK subtracts b_dec from the input and applies ReLU to the top k.
        cfg = SAEConfig("topk", d_in, d_sae, k=k, apply_b_dec_to_input=True)
        tensors = {
            "W_enc": encoder.T.contiguous(),
            "b_enc": weights["encoder.bias"],
            "W_dec": weights["W_dec"],
            "b_dec": weights["b_dec"],
        }
        metadata = {
            "source_format": "sparsify",
            **{k: v for k, v in config.items() if isinstance(v, (str, int, float))},
        }
    else:
        raise UnsupportedSAE(f"{folder} has neither {WEIGHTS} (SAELens) nor sae.safetensors (sparsify)")
    sae = build(cfg)
    with torch.no_grad():
        for name, tensor in tensors.items():
            getattr(sae, name).copy_(tensor.to(torch.float32))
    return sae, metadata
