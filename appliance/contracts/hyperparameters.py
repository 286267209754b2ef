"""SAE training settings, shared by the API (validation and ``GET /api/training/defaults``), the
worker (the loop builds its SAEConfig from them) and templates. Their defaults are the only ones:
``appliance.pipeline.sae.base.SAEConfig`` takes its own from here. Light: no torch."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

# The widest SAE a training may ask for (by d_sae, or expansion_factor × d_model); they also bound
# what an imported SAE's zip may unpack to.
MAX_D_SAE = 1 << 20
MAX_EXPANSION = 256

# The SAE architectures; one module each under appliance.pipeline.sae.
EncoderType = Literal["sparse", "topk", "jumprelu", "skip", "transcoder"]


class Hyperparameters(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """The training form's settings with the ranges it allows, plus what the form does not show;
    one definition for the API's validation, the worker's loop and the training templates."""

    d_sae: Annotated[int, msgspec.Meta(ge=16, le=MAX_D_SAE)] | None = None
    expansion_factor: Annotated[int, msgspec.Meta(ge=1, le=MAX_EXPANSION)] = 8
    k: Annotated[int, msgspec.Meta(ge=1, le=4096)] = 32
    l1_coefficient: Annotated[float, msgspec.Meta(ge=0, le=100)] = 5.0
    l0_coefficient: Annotated[float, msgspec.Meta(ge=0, le=100)] = 1.0
    learning_rate: Annotated[float, msgspec.Meta(gt=0, le=0.1)] = 3e-4
    batch_size: Annotated[int, msgspec.Meta(ge=8, le=65536)] = 1024
    total_steps: Annotated[int, msgspec.Meta(ge=1, le=10_000_000)] = 2000
    warmup_steps: Annotated[int, msgspec.Meta(ge=0, le=1_000_000)] = 100
    lr_decay: Literal["cosine", "linear", "exponential", "constant"] = "cosine"
    # With weight_decay 0 (the default: SAE weights are constrained by the
    # sparsity term, not by decay) AdamW and Adam take the same steps.
    optimizer: Literal["adamw", "adam", "sgd"] = "adamw"
    weight_decay: Annotated[float, msgspec.Meta(ge=0, le=1)] = 0.0
    # Anthropic's ghost grads (Jan 2024) for the L1 architectures (sparse, skip, transcoder): dead
    # latents get a gradient towards the residual error. TopK uses AuxK instead; JumpReLU neither.
    ghost_grads: bool = False
    l1_warmup_steps: Annotated[int, msgspec.Meta(ge=0, le=1_000_000)] = 0
    aux_k_coefficient: Annotated[float, msgspec.Meta(ge=0, le=10)] = 1 / 32
    dead_tokens: Annotated[int, msgspec.Meta(ge=1)] = 1_000_000
    # On normalised activations, short runs need thresholds that start near the data.
    jumprelu_init_threshold: Annotated[float, msgspec.Meta(gt=0, le=10)] = 0.5
    jumprelu_bandwidth: Annotated[float, msgspec.Meta(gt=0, le=10)] = 0.5
    # SAELens' "expected_average_only_in": activations are scaled so their mean norm is sqrt(d_in)
    # during training (coefficients then mean the same on any model); the export folds it back.
    normalize_activations: Literal["expected_average_only_in", "none"] = "expected_average_only_in"
    log_every: Annotated[int, msgspec.Meta(ge=1, le=100_000)] = 20
