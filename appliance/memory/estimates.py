"""What a job needs in memory at the least, from its parameters alone, so the API can refuse a job
that can never fit the budget when it is requested instead of accepting it to fail seconds later.

Each figure is a lower bound of what the worker admits (the handler adds what it learns only while
it runs: an SAE's size read from disk, the shard buffers, a streamed run's shuffle buffer, which it
may halve). So the API refuses only what certainly cannot fit; the worker's own admission stays the
final check. Torch-free: the API imports this.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec

from appliance.contracts.hyperparameters import Hyperparameters
from appliance.memory.admission import (
    MB,
    Estimate,
    MemoryManager,
    estimate_activations,
    estimate_model,
    estimate_sae_training,
)


def _model(params: dict[str, Any]) -> dict[str, int]:
    """The model's weights, for a job that loads the model (its size and precision in its params)."""
    parameters, precision = params.get("parameters"), params.get("precision")
    if not isinstance(parameters, int) or parameters <= 0 or not isinstance(precision, str):
        return {}
    try:
        return estimate_model(parameters, precision).parts
    except ValueError:  # a precision the manager has no width for: the worker will say so
        return {}


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


def _training(params: dict[str, Any]) -> dict[str, int]:
    try:
        hp = msgspec.convert(params.get("hyperparameters") or {}, Hyperparameters)
    except msgspec.ValidationError:  # not this module's to judge: the API validated them
        return {}
    d_in = int(params.get("d_in") or 0)
    parts = estimate_sae_training(
        d_in, hp.d_sae or hp.expansion_factor * d_in, hp.batch_size, optimizer=hp.optimizer
    ).parts
    stream = params.get("stream")
    return {**parts, **_model(stream)} if isinstance(stream, dict) else parts


def _probe(params: dict[str, Any]) -> dict[str, int]:
    probe = params.get("probe")
    return _model(probe) if isinstance(probe, dict) else {}


MINIMUM: dict[str, Callable[[dict[str, Any]], dict[str, int]]] = {
    "selftest": _selftest,
    "selftest.heavy": _selftest,
    "activations.extract": _extraction,
    "training.run": _training,
    "training.evaluate": _model,
    "features.extract": _model,
    "features.activations_on": _model,
    "features.ablation": _model,
    "features.label": _probe,
    "steering.generate": _model,
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
