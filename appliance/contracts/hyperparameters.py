"""SAE training settings, shared by the API (validation and ``GET /api/training/defaults``), the
worker (the loop builds its SAEConfig from them) and templates. Their defaults are the only ones:
``appliance.pipeline.sae.base.SAEConfig`` takes its own from here. The learning rate and the L1
coefficient depend on the architecture (ARCHITECTURE_DEFAULTS): a training that names neither gets its
architecture's, filled in when it starts (``for_architecture``). Light: no torch."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

# The widest SAE a training may ask for (by d_sae, or expansion_factor × d_model); they also bound
# what an imported SAE's zip may unpack to.
MAX_D_SAE = 1 << 20
MAX_EXPANSION = 256

# The SAE architectures; one module each under appliance.pipeline.sae.
EncoderType = Literal["sparse", "topk", "jumprelu", "skip", "transcoder", "batchtopk", "matryoshka_batchtopk", "gated"]

# The architectures whose sparsity is a count of active latents (``k``) rather than a coefficient:
# they take no target L0 (their k already is one). For the batch variants k is the AVERAGE per token.
K_ARCHITECTURES: frozenset[str] = frozenset({"topk", "batchtopk", "matryoshka_batchtopk"})


class Hyperparameters(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """The training form's settings with the ranges it allows, plus what the form does not show;
    one definition for the API's validation, the worker's loop and the training templates."""

    d_sae: Annotated[int, msgspec.Meta(ge=16, le=MAX_D_SAE)] | None = None
    expansion_factor: Annotated[int, msgspec.Meta(ge=1, le=MAX_EXPANSION)] = 8
    k: Annotated[int, msgspec.Meta(ge=1, le=4096)] = 32
    # None (the default): the architecture's own (ARCHITECTURE_DEFAULTS); a training records the number it got.
    l1_coefficient: Annotated[float, msgspec.Meta(ge=0, le=100)] | None = None
    l0_coefficient: Annotated[float, msgspec.Meta(ge=0, le=100)] = 1.0
    learning_rate: Annotated[float, msgspec.Meta(gt=0, le=0.1)] | None = None  # None: the architecture's
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
    # Matryoshka BatchTopK: the nested prefix sizes of the dictionary, strictly increasing, the last
    # equal to the SAE's width (the API checks both). None: the documented default of its SAE class.
    matryoshka_widths: list[Annotated[int, msgspec.Meta(ge=1, le=MAX_D_SAE)]] | None = None
    # BatchTopK's running threshold: the rate of its exponential moving average (SAELens' default).
    topk_threshold_lr: Annotated[float, msgspec.Meta(gt=0, le=1)] = 0.01
    # Target-L0 mode: the L0 asked for; the sparsity coefficient is adapted during training to reach it.
    # Only for the coefficient architectures (not K_ARCHITECTURES); None: the coefficient stays as given.
    target_l0: Annotated[float, msgspec.Meta(gt=0, le=MAX_D_SAE)] | None = None


class ArchitectureDefaults(msgspec.Struct, frozen=True, kw_only=True):
    """What a training gets for the settings it leaves to its architecture (None in Hyperparameters)."""

    learning_rate: float
    l1_coefficient: float | None = None  # None: the architecture has no L1 term


# Chosen by `mistudio bench quality` (README, "Default hyperparameters per architecture"): on the
# activations normalised to mean norm sqrt(d_in), the L1 architectures need a larger step than TopK and
# JumpReLU to become sparse within a few thousand steps (their encoder biases must travel), and an L1
# coefficient that lands near TopK's fidelity-sparsity trade-off. TopK and JumpReLU keep the rate of
# SAELens' and sparsify's recipes.
ARCHITECTURE_DEFAULTS: dict[EncoderType, ArchitectureDefaults] = {
    "sparse": ArchitectureDefaults(learning_rate=2e-3, l1_coefficient=2.0),
    # Its skip term carries the part of x that passes through, so the same sparsity costs it less.
    "skip": ArchitectureDefaults(learning_rate=2e-3, l1_coefficient=2.5),
    # Predicting the MLP's output is harder than reconstructing its input: a lower coefficient keeps
    # explained variance near the others' at a comparable L0.
    "transcoder": ArchitectureDefaults(learning_rate=2e-3, l1_coefficient=1.0),
    "topk": ArchitectureDefaults(learning_rate=3e-4),
    "jumprelu": ArchitectureDefaults(learning_rate=3e-4),
    # The batch variants of TopK: SAELens' rate, no L1 term (k bounds the average L0).
    "batchtopk": ArchitectureDefaults(learning_rate=3e-4),
    "matryoshka_batchtopk": ArchitectureDefaults(learning_rate=3e-4),
    # Gated: an L1 architecture like sparse, its penalty on the gate path only and its decoder rows of
    # unit norm, so λ buys more sparsity per unit of fidelity lost. Layer 2 of the demo model, 1,000
    # steps at 2e-3: λ = 3 / 4 / 6 -> explained variance 0.88 / 0.84 / 0.74 at L0 47 / 32 / 16
    # (1e-3, λ = 4: 0.75 at L0 52).
    "gated": ArchitectureDefaults(learning_rate=2e-3, l1_coefficient=4.0),
}


def learning_rate(hp: Hyperparameters, encoder_type: EncoderType) -> float:
    return ARCHITECTURE_DEFAULTS[encoder_type].learning_rate if hp.learning_rate is None else hp.learning_rate


def l1_coefficient(hp: Hyperparameters, encoder_type: EncoderType) -> float:
    """0 for an architecture without an L1 term, whatever ``hp`` says (its SAE never reads it)."""
    if hp.l1_coefficient is not None:
        return hp.l1_coefficient
    return ARCHITECTURE_DEFAULTS[encoder_type].l1_coefficient or 0.0


def for_architecture(hp: Hyperparameters, encoder_type: EncoderType) -> Hyperparameters:
    """``hp`` with what it leaves to the architecture filled in: what a training runs with and records.
    An architecture without an L1 term keeps ``l1_coefficient`` None unless the request named one."""
    chosen = ARCHITECTURE_DEFAULTS[encoder_type]
    return msgspec.structs.replace(
        hp,
        learning_rate=learning_rate(hp, encoder_type),
        l1_coefficient=chosen.l1_coefficient if hp.l1_coefficient is None else hp.l1_coefficient,
    )
