"""SAE training settings, shared by the API (validation), the worker (the loop) and templates.
Light: no torch."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

# The widest SAE a training may ask for (by d_sae, or expansion_factor × d_model); they also bound
# what an imported SAE's zip may unpack to.
MAX_D_SAE = 1 << 20
MAX_EXPANSION = 256


class Hyperparameters(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """The mock's ranges (INVENTORY §3.1) plus what its form lacks; one definition for the API's
    validation, the worker's loop and the training templates."""
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
    # The mock's choices. With weight_decay 0 (the default: SAE weights are constrained by the
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
