"""SAEs on disk in the SAELens v6 layout (export and import); ``load_folder`` also reads EleutherAI
sparsify folders (``sparsify``).

SAELens: a folder with ``cfg.json``, ``sae_weights.safetensors`` (``W_enc [d_in, d_sae]``, ``b_enc``,
``W_dec [d_sae, d_out]``, ``b_dec``, plus ``threshold`` for jumprelu and ``W_skip [d_out, d_in]`` for
skip transcoders; gated SAEs hold ``b_gate``, ``r_mag``, ``b_mag`` instead of ``b_enc``) and
``sparsity.safetensors`` (log10 firing frequency per latent). Our architectures map to SAELens classes:
sparse -> standard, topk -> topk, jumprelu -> jumprelu, gated -> gated, transcoder -> transcoder
(skip_transcoder when it carries a W_skip), skip -> skip_transcoder with d_out = d_in, SAELens' lossless
form of x_hat = dec(enc(x)) + alpha * x: W_skip = alpha * I, and the encoder's centring on b_dec folded
into b_enc, since SAELens transcoders never centre their input. batchtopk and matryoshka_batchtopk ->
jumprelu, as SAELens saves them: their one threshold repeated per latent, the training architecture, k
and the matryoshka widths in ``metadata.training_architecture(_details)``; a jumprelu file that says so
(ours or SAELens') is read back as that architecture, with its groups, so the browser can filter by them.
``metadata.mistudio_architecture`` names ours.

Reading is strict: a SAELens setting or tensor that changes what the SAE computes and that we do not
apply (run-time normalisation, one attention head, hook_z reshaping, an unknown tensor...) is refused
by name rather than ignored. TopK's ``rescale_acts_by_decoder_norm`` is folded into the weights, as
SAELens itself folds it when it saves an inference model.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from appliance.contracts.matryoshka import widths_problem
from appliance.pipeline.sae import CLASSES, SAE, Architecture, SAEConfig, build
from appliance.pipeline.sae.io import UnsupportedSAE, sparsify

__all__ = ["SAE_LENS_VERSION", "SPARSITY", "WEIGHTS", "UnsupportedSAE", "export", "load_folder"]

# The SAELens release whose v6 format export() writes and tests/test_peer_saelens.py loads it with.
SAE_LENS_VERSION = "6.54.12"
TO_SAELENS: dict[Architecture, str] = {
    "sparse": "standard",
    "topk": "topk",
    "jumprelu": "jumprelu",
    "transcoder": "transcoder",
    "skip": "skip_transcoder",
    "gated": "gated",
    # SAELens saves its batch TopK SAEs for inference as JumpReLUs with the learned threshold per latent,
    # naming the training architecture in metadata (training_architecture and its details).
    "batchtopk": "jumprelu",
    "matryoshka_batchtopk": "jumprelu",
}
_BATCH_TOPK = ("batchtopk", "matryoshka_batchtopk")
FROM_SAELENS: dict[str, Architecture] = {
    "standard": "sparse",
    "topk": "topk",
    "jumprelu": "jumprelu",
    "transcoder": "transcoder",
    "skip_transcoder": "transcoder",  # or "skip", when it is one (_skip_or_matrix)
    "gated": "gated",
}
_TRANSCODERS = ("transcoder", "skip_transcoder")
_BASE_TENSORS = frozenset({"W_enc", "b_enc", "W_dec", "b_dec"})
# Gated SAEs have no b_enc: a gate bias and a magnitude path (r_mag, b_mag) take its place.
_GATED_TENSORS = frozenset({"W_enc", "b_gate", "r_mag", "b_mag", "W_dec", "b_dec"})
# What each SAELens architecture holds (log_threshold: JumpReLU checkpoints before SAELens 6).
_TENSORS: dict[str, frozenset[str]] = {
    "standard": _BASE_TENSORS,
    "topk": _BASE_TENSORS,
    "jumprelu": _BASE_TENSORS | {"threshold", "log_threshold"},
    "transcoder": _BASE_TENSORS,
    "skip_transcoder": _BASE_TENSORS | {"W_skip"},
    "gated": _GATED_TENSORS,
}
# SAELens' defaults where a file leaves a setting out.
_SAELENS_TOPK_K = 100
# Top-level keys of SAELens configs before v6 that v6 keeps in ``metadata`` (sae_lens LLM_METADATA_KEYS).
_METADATA_KEYS = (
    "model_name",
    "hook_name",
    "hook_name_out",
    "hook_head_index",
    "hook_head_index_out",
    "model_class_name",
    "model_from_pretrained_kwargs",
    "prepend_bos",
    "exclude_special_tokens",
    "context_size",
    "seqpos_slice",
    "dataset_path",
    "neuronpedia_id",
)
_PRE_V6_NAMES = {
    "hook_point": "hook_name",
    "hook_point_head_index": "hook_head_index",
    "activation_fn_str": "activation_fn",
}
WEIGHTS = "sae_weights.safetensors"
SPARSITY = "sparsity.safetensors"


def export(sae: SAE, folder: Path, metadata: dict[str, Any], log_sparsity: torch.Tensor | None = None) -> Path:
    """Write ``sae`` as a SAELens v6 folder. ``metadata`` (SAELens' names: model_name, hook_name,
    context_size, dataset_path, prepend_bos, model_from_pretrained_kwargs...) is written as given; the
    format's own keys (sae_lens_version, mistudio_architecture) are ours."""
    from safetensors.torch import save_file

    cfg = sae.cfg
    architecture = _saelens_architecture(sae)
    transcoding = architecture in _TRANSCODERS
    with torch.no_grad():
        own = _GATED_TENSORS if architecture == "gated" else _BASE_TENSORS
        tensors = {name: _plain(getattr(sae, name)) for name in sorted(own)}
        if transcoding and cfg.apply_b_dec_to_input:
            # (x - b_dec) @ W_enc + b_enc == x @ W_enc + (b_enc - b_dec @ W_enc): the same latents.
            tensors["b_enc"] = _plain(sae.b_enc - sae.b_dec @ sae.W_enc)
        tensors.update({k: _plain(v) for k, v in sae.extra_state_tensors().items()})
    folder.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(folder / WEIGHTS))
    if log_sparsity is not None:
        save_file({"sparsity": _plain(log_sparsity)}, str(folder / SPARSITY))
    meta = {**metadata, "sae_lens_version": SAE_LENS_VERSION, "mistudio_architecture": cfg.architecture}
    if cfg.architecture == "skip" and "hook_name" in meta:
        meta.setdefault("hook_name_out", meta["hook_name"])  # it reconstructs what it reads
    if cfg.architecture in _BATCH_TOPK:
        meta.update(_batch_topk_metadata(cfg))
    config: dict[str, Any] = {
        "architecture": architecture,
        "d_in": cfg.d_in,
        "d_sae": cfg.d_sae,
        "dtype": "float32",
        "device": "cpu",
        "apply_b_dec_to_input": bool(cfg.apply_b_dec_to_input) and not transcoding,
        "normalize_activations": "none",
        "reshape_activations": "none",
        "metadata": meta,
    }
    if architecture == "topk":
        config.update(k=cfg.k, rescale_acts_by_decoder_norm=False)
    if transcoding:
        config["d_out"] = cfg.output_width
    (folder / "cfg.json").write_text(json.dumps(config, indent=2))
    return folder


def _batch_topk_metadata(cfg: SAEConfig) -> dict[str, Any]:
    """What SAELens' save_inference_model records of a batch TopK training (its TrainingSAEConfig's
    _metadata_with_training_info), with our values: k, the threshold's rate, the matryoshka groups, and a
    decoder kept at unit norm instead of rescaled. The groups are what our import restores."""
    details: dict[str, Any] = {
        "k": cfg.k,
        "topk_threshold_lr": cfg.topk_threshold_lr,
        "rescale_acts_by_decoder_norm": False,
    }
    if cfg.architecture == "matryoshka_batchtopk":
        details.update(matryoshka_widths=list(cfg.matryoshka_widths or []), use_matryoshka_aux_loss=False)
    return {"training_architecture": cfg.architecture, "training_architecture_details": details}


def _saelens_architecture(sae: SAE) -> str:
    if "W_skip" in sae.extra_state_tensors() and sae.cfg.architecture == "transcoder":
        return "skip_transcoder"
    return TO_SAELENS[sae.cfg.architecture]


def _plain(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.detach().float().contiguous().cpu()


def load_folder(folder: Path) -> tuple[SAE, dict[str, Any]]:
    """An SAE from a SAELens or sparsify folder, and its metadata; UnsupportedSAE (naming the setting)
    when the files describe an SAE we cannot compute as its authors do."""
    config = json.loads((folder / "cfg.json").read_text())
    if (folder / WEIGHTS).is_file():
        cfg, tensors, metadata = _read_saelens(folder, config)
    elif (folder / sparsify.WEIGHTS).is_file():
        cfg, tensors, metadata = sparsify.read(folder, config)
    else:
        raise UnsupportedSAE(f"{folder} has neither {WEIGHTS} (SAELens) nor {sparsify.WEIGHTS} (sparsify)")
    sae = build(cfg)
    with torch.no_grad():
        for name, tensor in tensors.items():
            getattr(sae, name).copy_(tensor.to(torch.float32))
    return sae, metadata


def _read_saelens(folder: Path, raw: dict[str, Any]) -> tuple[SAEConfig, dict[str, torch.Tensor], dict[str, Any]]:
    from safetensors.torch import load_file

    weights = load_file(str(folder / WEIGHTS))
    config, metadata = _as_v6(raw)
    architecture = str(config.get("architecture") or "standard")
    if architecture not in FROM_SAELENS:
        raise UnsupportedSAE(
            f"architecture={architecture!r}: SAELens {architecture} SAEs are not supported "
            f"(supported: {', '.join(FROM_SAELENS)})"
        )
    _refuse_unapplied(config, metadata, architecture)
    # Our exports before skip SAEs became skip transcoders: "standard" plus W_skip = alpha * I.
    legacy_skip = architecture == "standard" and metadata.get("mistudio_architecture") == "skip"
    known = _TENSORS[architecture] | ({"W_skip"} if legacy_skip else set())
    if unexpected := sorted(set(weights) - known):
        raise UnsupportedSAE(f"{WEIGHTS} holds {unexpected}, which a SAELens {architecture} SAE does not use")
    if missing := sorted(_TENSORS[architecture] - set(weights) - {"threshold", "log_threshold"}):
        raise UnsupportedSAE(f"{WEIGHTS} lacks {missing}")
    own = _GATED_TENSORS if architecture == "gated" else _BASE_TENSORS
    tensors = {name: weights[name].float() for name in own}
    (d_in, d_sae), d_out = tensors["W_enc"].shape, tensors["W_dec"].shape[1]
    for key, actual in (("d_in", d_in), ("d_sae", d_sae), ("d_out", d_out)):
        if key in config and config[key] != actual:
            raise UnsupportedSAE(f"{key}={config[key]} in cfg.json, but the weights are {actual} wide")
    apply_b_dec = bool(config.get("apply_b_dec_to_input", True))
    if architecture in _TRANSCODERS and apply_b_dec:
        raise UnsupportedSAE("apply_b_dec_to_input=true on a transcoder: its b_dec is in the output space")
    arch: Architecture = FROM_SAELENS[architecture]
    skip_matrix = False
    batch = None  # a jumprelu file that is a batch TopK SAE: (architecture, k, matryoshka widths)
    if architecture == "topk" and config.get("rescale_acts_by_decoder_norm"):
        _fold_decoder_norms(tensors)
    elif architecture == "jumprelu":
        threshold = weights["threshold"] if "threshold" in weights else weights["log_threshold"].exp()
        # SAELens gates relu(pre) by pre > threshold; ours gates pre by pre > threshold, which is the
        # same while the threshold is positive (1e-12 stands in for SAELens' zero or negative ones).
        if batch := _batch_topk_origin(metadata, threshold.float(), d_sae):
            arch, tensors["topk_threshold"] = batch[0], threshold.float()[0]
        else:
            tensors["log_threshold"] = threshold.float().clamp_min(1e-12).log()
    elif architecture == "skip_transcoder":
        alpha = _scalar_skip(weights["W_skip"].float())
        same_point = metadata.get("hook_name_out") in (None, metadata.get("hook_name"))
        if alpha is not None and same_point and d_in == d_out:
            arch, tensors["alpha"] = "skip", alpha  # ours: an autoencoder with x_hat += alpha * x
        else:
            skip_matrix, tensors["W_skip"] = True, weights["W_skip"].float()
    elif legacy_skip:
        arch, tensors["alpha"] = "skip", torch.diagonal(weights["W_skip"].float()).mean()
    if arch not in CLASSES:
        raise UnsupportedSAE(f"architecture {arch!r} is not supported")
    cfg = SAEConfig(arch, d_in, d_sae, d_out=d_out, apply_b_dec_to_input=apply_b_dec, skip_matrix=skip_matrix)
    if architecture == "topk":
        cfg.k = int(config.get("k") or _SAELENS_TOPK_K)
    elif batch:
        cfg.k, cfg.matryoshka_widths = batch[1], batch[2]
    return cfg, tensors, metadata


def _batch_topk_origin(
    metadata: dict[str, Any], threshold: torch.Tensor, d_sae: int
) -> tuple[Architecture, int, list[int] | None] | None:
    """(architecture, k, matryoshka widths) when a SAELens jumprelu file is a batch TopK SAE as SAELens
    (or our export) saves one: its metadata names the training architecture and its threshold is one
    value >= 0 for every latent. Else None, and it is read as the JumpReLU it also is; either way the
    latents are the same. k is the training's average (SAELens allows fractions: rounded), used only by
    a further training; the groups must be valid for the width, or the file is read as a JumpReLU."""
    trained = metadata.get("training_architecture")
    if trained not in _BATCH_TOPK or threshold.numel() == 0:
        return None
    if float(threshold[0]) < 0 or not torch.equal(threshold, threshold[0].expand_as(threshold)):
        return None
    details = metadata.get("training_architecture_details") or {}
    k = max(1, round(float(details.get("k") or _SAELENS_TOPK_K)))
    if trained == "batchtopk":
        return "batchtopk", k, None
    widths = [int(w) for w in details.get("matryoshka_widths") or []]
    return ("matryoshka_batchtopk", k, widths) if widths_problem(widths, d_sae) is None else None


def _as_v6(raw: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(config, metadata) in SAELens v6's names, from a v6 config or an older one (as
    sae_lens.loading.pretrained_sae_loaders.handle_pre_6_0_config reads them)."""
    config = {_PRE_V6_NAMES.get(key, key): value for key, value in raw.items()}
    metadata = dict(config.get("metadata") or {})
    for key in _METADATA_KEYS:
        if key in config and key not in metadata:
            metadata[key] = config[key]
    k = (config.get("activation_fn_kwargs") or {}).get("k")
    if config.get("activation_fn") == "topk" and k is not None:
        config.update(architecture="topk", k=k)
    if isinstance(config.get("normalize_activations"), bool):
        config["normalize_activations"] = "expected_average_only_in" if config["normalize_activations"] else "none"
    return config, metadata


def _refuse_unapplied(config: dict[str, Any], metadata: dict[str, Any], architecture: str) -> None:
    """UnsupportedSAE naming the first setting whose value changes what the SAE computes and that the
    appliance would not apply. Settings that only shaped training (coefficients, decoder_init_norm,
    use_sparse_activations, jumprelu bandwidth...) are left alone."""
    activation = config.get("activation_fn")
    unapplied = {
        "normalize_activations": (
            config.get("normalize_activations") not in (None, "none"),
            "the SAE rescales its input at run time; fold the scaling into the weights first",
        ),
        "reshape_activations": (
            config.get("reshape_activations") not in (None, "none"),
            "the SAE reads attention heads' hook_z, which the appliance does not capture",
        ),
        "hook_head_index": (
            metadata.get("hook_head_index") is not None or metadata.get("hook_head_index_out") is not None,
            "the SAE reads a single attention head, which the appliance does not capture",
        ),
        "finetuning_scaling_factor": (
            bool(config.get("finetuning_scaling_factor")),
            "the SAE scales its latents by a fine-tuned factor the appliance does not apply",
        ),
        "activation_fn": (
            activation not in (None, "relu") and not (activation == "topk" and architecture == "topk"),
            "only ReLU (and TopK) latents are supported",
        ),
    }
    for key, (refused, why) in unapplied.items():
        if refused:
            value = config.get(key, metadata.get(key))
            raise UnsupportedSAE(f"{key}={value!r}: {why}")


def _fold_decoder_norms(tensors: dict[str, torch.Tensor]) -> None:
    """SAELens' TopK with rescale_acts_by_decoder_norm ranks and returns pre * |W_dec_i| and decodes
    z_i / |W_dec_i|: the same SAE as W_enc * n, b_enc * n, W_dec / n (sae_lens' _fold_norm_topk, with
    get_W_dec_norm's floor), so latents and reconstruction both equal SAELens'."""
    norms = tensors["W_dec"].norm(dim=-1).clamp_min(1e-8)
    tensors["W_enc"] = tensors["W_enc"] * norms
    tensors["b_enc"] = tensors["b_enc"] * norms
    tensors["W_dec"] = tensors["W_dec"] / norms.unsqueeze(1)


def _scalar_skip(W_skip: torch.Tensor) -> torch.Tensor | None:
    """alpha when ``W_skip`` is exactly alpha * I (our skip SAE's form), else None."""
    if W_skip.ndim != 2 or W_skip.shape[0] != W_skip.shape[1]:
        return None
    alpha = W_skip[0, 0]
    return alpha if torch.equal(W_skip, alpha * torch.eye(W_skip.shape[0], dtype=W_skip.dtype)) else None
