"""Parameters of the feature jobs: ``features.extract`` (the pass over the evaluation text),
``features.activations_on`` and ``features.ablation`` (probes a person waits on) and
``features.explain`` (explanations by a language model, scored by detection and fuzzing). The API builds
them from its rows; the worker decodes them again, which is the contract's check on its side. Torch-free.

The model's weight count and precision stay top-level fields of every kind that loads the model:
the API's memory check (``appliance.memory.estimates``) reads them from the encoded parameters to
refuse a job that can never fit before it is queued.
"""

from __future__ import annotations

import msgspec

from appliance.contracts.labeling import LabelingSettings
from appliance.contracts.params.models import HookPoint


class SaeModel(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """What every feature job needs to run the SAE on its model."""

    training_id: str
    model_path: str
    precision: str
    tokenizer: str  # a model id, or "demo"
    hook_point: HookPoint
    parameters: int = 0  # the model's weights, for the memory estimate
    context_length: int = 128


class ExtractParams(SaeModel, kw_only=True):
    """``features.extract``: one pass over the first ``eval_samples`` texts of a dataset."""

    dataset_id: str
    eval_samples: int = 2000
    top_k_examples: int = 20
    batch_size: int = 8
    # Positions of these tokens neither count in the statistics nor are examples (they may still be
    # shown inside an example's context): appliance.contracts.special_tokens.
    exclude_special_tokens: bool = True
    special_token_ids: list[int] | None = None


class ProbeParams(SaeModel, kw_only=True):
    """The model run for one feature (also the local labeller's model)."""

    feature: int
    top_others: int = 3


class ActivationsOnParams(ProbeParams, kw_only=True):
    """``features.activations_on``: the feature over a text the user typed (the heatmap)."""

    text: str
    # The extraction's left-out tokens: no activation there, as in its stored contexts.
    excluded_token_ids: list[int] = msgspec.field(default_factory=list)


class AblationParams(ProbeParams, kw_only=True):
    """``features.ablation``: the feature zeroed on its own max-activating contexts (token ids)."""

    contexts: list[list[int]] = msgspec.field(default_factory=list)


class LocalModel(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """The registered model that answers as the "local" provider (``LabelingSettings.local_model_id``, else the
    SAE's own model)."""

    model_id: str
    model_path: str
    precision: str
    tokenizer: str  # a model id, or "demo"
    parameters: int = 0  # the model's weights, for the memory estimate


class ExplainParams(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """``features.explain``: explain ``features`` (in this order) from their extraction's contexts, then judge
    each explanation by detection and fuzzing on held-out contexts (``score``)."""

    training_id: str
    features: list[int]
    explainer: str  # the provider's key for cached results: "openai:<model>@<host>" or "local:<model id>"
    settings: LabelingSettings
    tokenizer: str  # the extraction's tokenizer, which decodes its stored tokens
    excluded_token_ids: list[int] = msgspec.field(default_factory=list)  # special tokens: never highlighted
    score: bool = True
    max_calls: int = 5000  # language-model calls this run may make
    redo: bool = False  # ignore cached results
    local: LocalModel | None = None  # provider "local" only
