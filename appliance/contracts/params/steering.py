"""Parameters of ``steering.generate``: the same prompt, seed and sampling with and without feature
interventions (the method: ``appliance.pipeline.steering.generate``). Torch-free."""

from __future__ import annotations

from typing import Literal

import msgspec

from appliance.contracts.params.models import HookPoint

Mode = Literal["add", "clamp", "ablate"]


class SteeredFeature(msgspec.Struct):
    index: int
    coefficient: float
    mode: Mode
    strength: float  # the feature's typical max activation, in activation units
    label: str = ""


class GenerateParams(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    training_id: str
    model_path: str
    precision: str
    parameters: int  # the model's weights, for the memory estimate
    tokenizer: str
    hook_point: HookPoint  # the SAE's
    target_module: str  # where the interventions act
    same_module: bool  # target_module is the SAE's hook module (clamp/ablate need it)
    intervention_layer: int
    prompt: str
    features: list[SteeredFeature]
    temperature: float = 0.7
    top_p: float = 1.0
    max_tokens: int = 100
    seed: int = 0
    stream: bool = False
