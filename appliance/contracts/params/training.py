"""Parameters of the SAE jobs (``training.run``, ``training.evaluate``, ``training.import``): built and
encoded by the API, decoded by the runner for the handler. Everything a handler needs to know about
the model, the dataset and the hook point is resolved by the API and carried here, so the worker
never re-reads rows that may have changed since the user pressed start."""

from __future__ import annotations

import msgspec

from appliance.contracts.hyperparameters import EncoderType, Hyperparameters
from appliance.contracts.params.models import HookPoint, HookType

__all__ = [
    "EvaluateRun",
    "EvaluationSpec",
    "ExportMetadata",
    "HookPoint",
    "HookType",
    "ImportRun",
    "StreamSpec",
    "TrainRun",
]


class StreamSpec(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """What a streamed source runs: the model over the dataset's first ``max_samples`` samples."""

    model_path: str
    precision: str
    tokenizer: str
    dataset_id: str
    hook_point: HookPoint
    target_point: HookPoint | None = None  # transcoders: the MLP output
    context_length: int = 128
    max_samples: int | None = None
    forward_batch: int = 8
    parameters: int = 0  # the model's size, for the memory estimate
    # Positions of these tokens are never trained on nor held out (appliance.contracts.special_tokens).
    # False by default for jobs written before the setting: a resumed run keeps the batches it began
    # with. The API always sets it (on unless the request turns it off).
    exclude_special_tokens: bool = False
    special_token_ids: list[int] | None = None


class EvaluationSpec(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """The spliced-model evaluation: the SAE in place of ``module``'s output on held-out samples."""

    model_path: str
    precision: str
    tokenizer: str
    dataset_id: str
    module: str
    context_length: int
    samples: int
    skip_samples: int = 0  # the first samples the training read: the evaluation starts after them
    reads_input: bool = False  # transcoders map the module's input to its output
    # Transcoders: the mlp_in point they read, which says how to read it (None in jobs written before
    # it: those read the MLP's input itself, as their SAEs were trained).
    source: HookPoint | None = None
    # As the SAE was trained: the model keeps its own activation at these tokens' positions and they
    # are left out of the averages (SAELens' run_evals). False for jobs written before the setting.
    exclude_special_tokens: bool = False
    special_token_ids: list[int] | None = None


class ExportMetadata(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """What the SAELens export's ``metadata`` says about where the SAE comes from, in SAELens' names:
    ``model_name`` and ``dataset_path`` are the Hub repo ids when the model or dataset came from the
    Hub (else their names), so a loader can resolve them; the appliance's own ids are written as
    ``mistudio_*`` (``pipeline.sae.io.provenance``)."""

    model_name: str
    model_id: str
    context_size: int
    dataset_path: str
    training_id: str
    dataset_id: str = ""
    tokenizer: str = ""  # what the worker reads ``prepend_bos`` from ("" in jobs written before it)
    # SAELens' name: the token ids left out of the training's activations, or false.
    exclude_special_tokens: list[int] | bool = False


class TrainRun(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    training_id: str
    activation_id: str | None  # None: activations streamed from the model (``stream``)
    hook_name: str
    target_hook_name: str | None  # transcoders: the MLP output hook
    encoder_type: EncoderType
    d_in: int
    hyperparameters: Hyperparameters
    seed: int = 0
    auto_save_interval: int = 500
    metadata: ExportMetadata
    # The final evaluation (the SAE spliced into the model on held-out text); None skips it (no model).
    evaluation: EvaluationSpec | None = None
    stream: StreamSpec | None = None


class EvaluateRun(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    training_id: str
    train: TrainRun | None  # the run that made the SAE (its held-out activations); None for imported SAEs
    evaluation: EvaluationSpec | None  # None: held-out quality only
    parameters: int = 0  # the model's size, for the memory estimate
    precision: str = "fp32"


class ImportRun(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    training_id: str
    model_name: str
    d_model: int
    hook_points: list[HookPoint]
    upload: str | None = None  # a zip on disk
    repo_id: str | None = None
    subfolder: str | None = None
    revision: str | None = None
    layer: int | None = None  # overrides what the files say
    hook_type: HookType | None = None
