"""What a job needs in memory at the least, from its parameters alone, so the API can refuse a job
that can never fit the budget when it is requested instead of accepting it to fail seconds later.

Each figure is a lower bound of what the worker admits (the handler adds what it learns only while
it runs: an SAE's size read from disk, the shard buffers, a streamed run's shuffle buffer, which it
may halve). So the API refuses only what certainly cannot fit; the worker's own admission stays the
final check. Torch-free: the API imports this.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

from appliance.contracts.hyperparameters import Hyperparameters
from appliance.contracts.matryoshka import default_widths
from appliance.memory.admission import (
    MB,
    Estimate,
    MemoryManager,
    estimate_activations,
    estimate_model,
    estimate_sae_training,
)

# The spliced evaluation (appliance.pipeline.sae.evaluation.splice) runs the model over this many samples at once
# and holds, at its peak, up to this many [tokens, vocabulary] fp32 tensors' worth: three live (the first run's
# log-softmax, the logits the model returns and their valid positions), the rest the heap's pieces of earlier
# ones within the batch; the heap is trimmed between batches (measured: at most 6.7 on a 4 x 512 model with a
# 4,096-token vocabulary, 5-6.7 from batch to batch).
SPLICE_BATCH = 8
SPLICE_LOGITS = 8
# The feature map (UMAP of the decoder rows): what importing umap-learn and compiling its numba kernels add to
# the worker the first time (measured beside torch, transformers and datasets, which bring scipy: 171 MB to
# import, and its first fit keeps about 85 MB of compiled kernels beyond its working set),
# and its working set beside the decoder it reads (pynndescent's graph and trees, the fuzzy graph, the spectral
# layout; measured: 71 MB at 3,072 latents, 217 MB at 12,288 of width 768).
MAP_LIBRARIES_BYTES = 256 * MB
MAP_BASE_BYTES = 24 * MB
MAP_BYTES_PER_LATENT = 16 * 1024
# The local labeller (appliance.pipeline.features.local_chat) cuts a prompt to CHAT_PROMPT_TOKENS and a reply to
# CHAT_REPLY_TOKENS. Generating holds the KV cache of both and, during the prompt's pass, one block's working set:
# bounded by CHAT_WORK_PER_D x d_model + CHAT_WORK_PER_INNER x the MLP's width activations per token, plus
# CHAT_WORK_BASE (measured on CPU with SDPA, fp32 and bf16, 512-1,024 wide Llama shapes, 1-8 blocks: 35-268 MB
# for 512-4,096 tokens, within 0.6-0.95 of this bound; transformers computes the logits of the last position only).
CHAT_PROMPT_TOKENS = 2048
CHAT_REPLY_TOKENS = 256
CHAT_WORK_PER_D = 16
CHAT_WORK_PER_INNER = 4
CHAT_WORK_BASE = 32 * MB


def vocab_size(folder: str | Path) -> int:
    """The model's vocabulary (its config.json's ``vocab_size``, or its text model's), 0 when unknown."""
    try:
        config = msgspec.json.decode((Path(folder) / "config.json").read_bytes())
    except (OSError, msgspec.DecodeError):
        return 0
    if not isinstance(config, dict):
        return 0
    size = config.get("vocab_size") or (config.get("text_config") or {}).get("vocab_size")
    return size if isinstance(size, int) and size > 0 else 0


def largest(*phases: Estimate) -> Estimate:
    """A job's plan: the phase that holds the most at once (its parts are what a refusal names)."""
    return max(phases, key=lambda phase: phase.total)


def estimate_splice_evaluation(model_path: str, precision: str, context_length: int, parameters: int = 0) -> Estimate:
    """A training's spliced evaluation: its own model, loaded after the steps, and the logits of one batch."""
    logits = SPLICE_LOGITS * SPLICE_BATCH * context_length * vocab_size(model_path) * 4
    return Estimate({**estimate_model(parameters, precision, checkpoint=model_path).parts, "evaluation logits": logits})


def estimate_training(steps: Estimate, evaluation: Estimate | None, held_out: int = 0) -> Estimate:
    """A training's plan: the larger of its steps (the SAE, its optimizer, a batch, where the activations come
    from) and its spliced evaluation, during which the SAE and its optimizer state are still held (not the batch,
    nor a stream's model, closed by then). ``held_out``: the held-out activations, kept through both."""
    kept = {name: size for name, size in steps.parts.items() if name in _SAE_STATE}
    held = {"held-out activations": held_out} if held_out else {}
    training = Estimate({**steps.parts, **held})
    if evaluation is None:
        return training
    return largest(training, Estimate({**kept, **held, **evaluation.parts}))


_SAE_STATE = ("sae weights", "gradients", "optimizer state")


def estimate_feature_map(d_sae: int) -> Estimate:
    """The feature map: its working set, and umap-learn the first time (its import and its numba kernels)."""
    parts = {"feature map": MAP_BASE_BYTES + d_sae * MAP_BYTES_PER_LATENT}
    if "umap" not in sys.modules:
        parts["feature map libraries"] = MAP_LIBRARIES_BYTES
    return Estimate(parts)


def _text_config(folder: str | Path) -> dict[str, Any]:
    """The model's config.json (its text model's, for a multimodal wrapper), {} when unreadable."""
    try:
        config = msgspec.json.decode((Path(folder) / "config.json").read_bytes())
    except (OSError, msgspec.DecodeError):
        return {}
    if not isinstance(config, dict):
        return {}
    text = config.get("text_config")
    return text if isinstance(text, dict) else config


def _first(config: dict[str, Any], *names: str) -> int:
    return next((value for name in names if isinstance(value := config.get(name), int) and value > 0), 0)


def estimate_chat(model_path: str, precision: str, parameters: int = 0) -> Estimate:
    """The local labeller: the model (as every job that loads one) and its generation of one reply to the longest
    prompt it allows (the KV cache of the prompt and the reply, the prompt pass's working set), from the shape in
    the model's config.json. Activations are fp32 at fp32 and q8 (dynamic quantization computes in fp32), else
    16-bit."""
    config = _text_config(model_path)
    d_model = _first(config, "hidden_size", "n_embd", "d_model")
    layers = _first(config, "num_hidden_layers", "n_layer", "num_layers")
    heads = _first(config, "num_attention_heads", "n_head") or 1
    head_dim = _first(config, "head_dim") or d_model // heads
    kv_width = (_first(config, "num_key_value_heads") or heads) * head_dim
    inner = _first(config, "intermediate_size", "n_inner") or 4 * d_model
    tokens = CHAT_PROMPT_TOKENS + CHAT_REPLY_TOKENS
    tokens = min(tokens, _first(config, "max_position_embeddings", "n_positions") or tokens)
    width = 4 if precision in ("fp32", "q8") else 2
    parts = dict(estimate_model(parameters, precision, checkpoint=model_path).parts)
    if d_model and layers:
        parts["generation kv cache"] = 2 * layers * tokens * kv_width * width
        per_token = CHAT_WORK_PER_D * d_model + CHAT_WORK_PER_INNER * inner
        parts["generation working set"] = tokens * per_token * width + CHAT_WORK_BASE
    return Estimate(parts)


def _model(params: dict[str, Any]) -> dict[str, int]:
    """The model's weights and what loading them costs, for a job that loads the model (its size and precision
    in its params; its folder, whose checkpoint header gives both exactly when it is safetensors)."""
    parameters, precision = params.get("parameters") or 0, params.get("precision")
    folder = params.get("model_path") or (params.get("evaluation") or {}).get("model_path")
    if not isinstance(parameters, int) or not isinstance(precision, str):
        return {}
    if parameters <= 0 and not isinstance(folder, str):
        return {}
    try:
        return estimate_model(parameters, precision, checkpoint=folder if isinstance(folder, str) else None).parts
    except ValueError:  # a precision the manager has no width for: the worker will say so
        return {}


def _model_files(params: dict[str, Any]) -> dict[str, int]:
    """Import and register: the folder's checkpoint (an import's source, not yet copied) at the chosen precision."""
    folder = params.get("source") or params.get("path")
    return _model({"model_path": folder, "precision": params.get("precision")}) if isinstance(folder, str) else {}


def _selftest(params: dict[str, Any]) -> dict[str, int]:
    return {"selftest": int(params.get("memory_mb") or 0) * MB}


def _extraction(params: dict[str, Any]) -> dict[str, int]:
    n_hooks = len(params.get("hook_points") or ())
    batch_tokens = int(params.get("batch_size") or 0) * int(params.get("context_length") or 0)
    return {
        **_model(params),
        "batch activations": estimate_activations(
            batch_tokens, int(params.get("d_model") or 0), "fp32", n_hooks * 2
        ).total,
    }


def estimate_sae_steps(encoder_type: str, d_in: int, hp: Hyperparameters) -> Estimate:
    """An SAE's training steps (``estimate_sae_training``) with what its architecture holds beyond the shared
    weights and one batch's input, reconstruction and latents (each with its gradient): jumprelu's
    thresholds; skip's alpha; gated: b_gate, r_mag and b_mag instead of b_enc, its second path's
    pre-activations and gate per latent, and the auxiliary reconstruction; matryoshka_batchtopk: each prefix
    group's share of the reconstruction per token ([groups, batch, d_in], kept for the backward, which
    builds its gradient of the same size: appliance.pipeline.sae.matryoshka)."""
    d_sae = hp.d_sae or hp.expansion_factor * d_in
    base = estimate_sae_training(d_in, d_sae, hp.batch_size, optimizer=hp.optimizer)
    extra_params = extra_batch = 0  # values, and values per token
    if encoder_type == "gated":
        extra_params, extra_batch = 2 * d_sae, 2 * d_sae + d_in
    elif encoder_type == "jumprelu":
        extra_params = d_sae  # its per-latent (log) thresholds
    elif encoder_type == "skip":
        extra_params = 1  # alpha
    elif encoder_type == "matryoshka_batchtopk":
        extra_batch = len(hp.matryoshka_widths or default_widths(d_sae)) * d_in
    if not extra_params and not extra_batch:
        return base
    # The weights, their gradients and the optimizer's state all grow with the number of parameters.
    shared = 2 * d_in * d_sae + d_sae + d_in  # what estimate_sae_training counts
    parts = {
        name: size * (shared + extra_params) // shared if name in _SAE_STATE else size
        for name, size in base.parts.items()
    }
    parts["batch"] += hp.batch_size * extra_batch * 4 * 2  # fp32 values and their gradients
    return Estimate(parts)


def _training(params: dict[str, Any]) -> dict[str, int]:
    try:
        hp = msgspec.convert(params.get("hyperparameters") or {}, Hyperparameters)
    except msgspec.ValidationError:  # not this module's to judge: the API validated them
        return {}
    d_in = int(params.get("d_in") or 0)
    parts = estimate_sae_steps(str(params.get("encoder_type") or "sparse"), d_in, hp).parts
    stream = params.get("stream")
    steps = Estimate({**parts, **_model(stream)} if isinstance(stream, dict) else parts)
    return estimate_training(steps, _evaluation(params.get("evaluation"))).parts


def _evaluation(spec: Any) -> Estimate | None:
    if not isinstance(spec, dict) or not isinstance(spec.get("model_path"), str):
        return None
    try:
        return estimate_splice_evaluation(spec["model_path"], str(spec.get("precision")), int(spec["context_length"]))
    except (ValueError, KeyError, TypeError):  # a precision the manager has no width for: the worker will say so
        return None


def _explain(params: dict[str, Any]) -> dict[str, int]:
    """Explanations: the local labeller's model and its generation (an HTTP endpoint needs nothing here)."""
    local = params.get("local")
    if not isinstance(local, dict) or not isinstance(local.get("model_path"), str):
        return {}
    try:
        return estimate_chat(local["model_path"], str(local.get("precision")), int(local.get("parameters") or 0)).parts
    except ValueError:  # a precision the manager has no width for: the worker will say so
        return {}


MINIMUM: dict[str, Callable[[dict[str, Any]], dict[str, int]]] = {
    "selftest": _selftest,
    "selftest.heavy": _selftest,
    "activations.extract": _extraction,
    "training.run": _training,
    "training.evaluate": _model,
    "features.extract": _model,
    "features.activations_on": _model,
    "features.ablation": _model,
    "features.explain": _explain,
    "steering.generate": _model,
    "model.import": _model_files,
    "model.register": _model_files,
}


def minimum(kind: str, params: dict[str, Any]) -> Estimate | None:
    estimator = MINIMUM.get(kind)
    parts = {name: size for name, size in (estimator(params) if estimator else {}).items() if size > 0}
    return Estimate(parts) if parts else None


def refuse_what_never_fits(memory: MemoryManager, kind: str, params: dict[str, Any]) -> None:
    """Raise INSUFFICIENT_MEMORY (503, with the worker's suggestion) if the job can never fit."""
    estimate = minimum(kind, params)
    if estimate is not None:
        memory.check_budget(estimate)
