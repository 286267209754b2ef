"""What a resource is called where a person reads about it (a delete refusal, the storage view). Datasets
and models have names; activation sets and trainings have none, so they are named by what they hold, as
their tabs show them: "L2 residual", "L0-3 mlp_out", "topk k=32 L2 residual"."""

from __future__ import annotations

from typing import Any

import msgspec

from appliance.contracts.hyperparameters import K_ARCHITECTURES
from appliance.data.database import Row

# A dependents row's kind (appliance.data: datasets/models/activation_sets.dependents), as a sentence says it.
KIND_WORDS: dict[str, tuple[str, str]] = {
    "dataset": ("dataset", "datasets"),
    "model": ("model", "models"),
    "activation_set": ("activation set", "activation sets"),
    "training": ("training", "trainings"),
}


def layers_text(layers: list[int]) -> str:
    """Runs of consecutive layers as ranges: "L2", "L0-3", "L0-1, L5"."""
    runs: list[list[int]] = []
    for layer in sorted(set(layers)):
        if runs and layer == runs[-1][-1] + 1:
            runs[-1].append(layer)
        else:
            runs.append([layer])
    return ", ".join(f"L{run[0]}" if len(run) == 1 else f"L{run[0]}-{run[-1]}" for run in runs)


def activation_set_name(config: dict[str, Any]) -> str:
    """An activation set by its layers and hooks ("L0-3 residual + mlp_out")."""
    return f"{layers_text(config.get('layers') or [])} {' + '.join(config.get('hook_types') or [])}".strip()


def training_name(encoder_type: str, layer: int, hook_type: str, config: dict[str, Any]) -> str:
    """A training by its architecture, k where it has one, and where it reads ("topk k=32 L2 residual")."""
    k = (config.get("hyperparameters") or {}).get("k")
    width = f" k={k}" if encoder_type in K_ARCHITECTURES and k else ""
    return f"{encoder_type}{width} L{layer} {hook_type}"


def dependent_name(row: Row) -> str:
    """The name of a row of a ``dependents`` query (kind, id, encoder_type, layer, hook_type, config)."""
    config = msgspec.json.decode(row["config"]) if row["config"] else {}
    if row["kind"] == "training":
        return training_name(row["encoder_type"], row["layer"], row["hook_type"], config)
    return activation_set_name(config)
