"""Every event the appliance emits, typed: what an SSE client receives as ``data:`` on /api/events.

Events are written by the worker (job handlers through ``JobContext.event``/``progress``), by the job
store (``job.updated``), by the rule that ends a failed job's resource (``appliance.jobs.finalize``)
and by the API's monitor (``system.metrics``, never stored). Each message carries one envelope
(``{id, topic, type, job_id, created_at, data}``); ``type`` names the event and decides the shape of
``data``. ``StreamEvent`` is the tagged union of all of them: the OpenAPI document publishes it as
the schema of the event streams, so the web UI gets the same union as TypeScript types and never
casts a payload.

Emitters build the payload Struct themselves, and every door that writes or streams an event checks
it is its type's (``checked``): a wrong payload fails where it is made. The Structs also forbid
unknown fields when decoding: a test decodes every stored event of a real run into its Struct, so a
stored event the UI could not read fails there. Torch-free (the API imports it).
"""

from __future__ import annotations

from typing import Any, Literal, Union, get_args, get_type_hints

import msgspec

from appliance.device.sample import Sample
from appliance.jobs.records import Job


class _Payload(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, omit_defaults=True):
    """Optional fields left unset are not sent: an event carries what its emitter said, nothing more."""


# --- progress: JobContext.progress; ephemeral (thinned by retention), one per job kind's stage ---


class Progress(_Payload):
    """``job.progress`` and ``steering.progress``: where a job is (0..1) and what it is doing."""

    job_id: str
    progress: float
    message: str
    t: float  # unix seconds when it was reported
    step: int | None = None  # the self-test's step


class DatasetProgress(Progress):
    samples: int | None = None  # ingested or tokenized so far


class ModelProgress(Progress):
    bytes: int | None = None  # downloaded so far
    total: int | None = None  # the download's size, when the Hub says


class ActivationsProgress(Progress):
    samples: int | None = None
    tokens: int | None = None


class FeaturesProgress(Progress):
    training_id: str | None = None
    samples: int | None = None


class TrainingProgress(Progress):
    """A logged step carries the step's metrics (the row also stored in ``training_metrics``). While a
    streamed run's model fills a shuffle buffer or computes the held-out activations, the ``fill_``
    fields say how far that is (no ``step``: a note, not a metrics row)."""

    training_id: str | None = None
    tokens: int | None = None
    loss: float | None = None
    mse: float | None = None
    sparsity_loss: float | None = None
    l0: float | None = None
    dead_latents: int | None = None
    explained_variance: float | None = None
    learning_rate: float | None = None
    activations_per_s: float | None = None
    memory_mb: float | None = None
    # The sparsity coefficient the step trained with (L1 or L0 term; None for the k-architectures):
    # in target-L0 mode the controller moves it, and it converges with ``l0``.
    sparsity_coefficient: float | None = None
    eta_s: float | None = None
    fill_tokens: int | None = None  # tokens run through the model in this fill so far
    fill_total: int | None = None  # the fill's tokens
    fill_tokens_per_s: float | None = None
    fill_eta_s: float | None = None
    tokens_forwarded: int | None = None  # tokens run through the model since the job started


# --- a resource changed: the UI reloads it. ``status`` is the resource's new status ("deleted" when
# the rule for a failed job removed the row). ---


class DatasetUpdated(_Payload):
    dataset_id: str
    status: str | None = None
    tokenization: str | None = None  # a tokenization finished ("ready"); then `tokenizer` names it
    tokenizer: str | None = None


class ModelUpdated(_Payload):
    model_id: str
    status: str


class ActivationsUpdated(_Payload):
    activation_id: str
    status: str


class TrainingUpdated(_Payload):
    training_id: str
    status: str  # a training status, or "evaluated" when an on-demand evaluation finished


class FeaturesUpdated(_Payload):
    training_id: str
    status: str  # "ready", "explained" (by a language model), or the extraction's status when its job ended


class TrainingCheckpoint(_Payload):
    training_id: str
    step: int
    kind: str  # "auto", "user" (save now), "final"...
    held_out_loss: float | None = None


class TrainingLog(_Payload):
    training_id: str
    level: str
    message: str
    step: int | None = None


class SteeringToken(_Payload):
    """One generated token of a streamed steering run, for one side of the comparison."""

    job_id: str
    side: Literal["unsteered", "steered"]
    text: str
    index: int


class SteeringCompleted(_Payload):
    job_id: str
    # The same object POST /api/steering answers without streaming; that route documents no schema
    # of its own yet, so neither can this field.
    result: dict[str, Any]


# --- the envelope, one Struct per event type: ``type`` is the tag ---


class _Event(msgspec.Struct, tag_field="type", kw_only=True):
    id: int | None  # the row id (SSE ``id:``, for Last-Event-ID); None for an ephemeral event
    topic: str
    job_id: str | None
    created_at: str


class JobUpdatedEvent(_Event, tag="job.updated"):
    data: Job


class JobProgressEvent(_Event, tag="job.progress"):
    data: Progress


class DatasetProgressEvent(_Event, tag="dataset.progress"):
    data: DatasetProgress


class ModelProgressEvent(_Event, tag="model.progress"):
    data: ModelProgress


class ActivationsProgressEvent(_Event, tag="activations.progress"):
    data: ActivationsProgress


class TrainingProgressEvent(_Event, tag="training.progress"):
    data: TrainingProgress


class FeaturesProgressEvent(_Event, tag="features.progress"):
    data: FeaturesProgress


class SteeringProgressEvent(_Event, tag="steering.progress"):
    data: Progress


class DatasetUpdatedEvent(_Event, tag="dataset.updated"):
    data: DatasetUpdated


class ModelUpdatedEvent(_Event, tag="model.updated"):
    data: ModelUpdated


class ActivationsUpdatedEvent(_Event, tag="activations.updated"):
    data: ActivationsUpdated


class TrainingUpdatedEvent(_Event, tag="training.updated"):
    data: TrainingUpdated


class TrainingCheckpointEvent(_Event, tag="training.checkpoint"):
    data: TrainingCheckpoint


class TrainingLogEvent(_Event, tag="training.log"):
    data: TrainingLog


class FeaturesUpdatedEvent(_Event, tag="features.updated"):
    data: FeaturesUpdated


class SteeringTokenEvent(_Event, tag="steering.token"):
    data: SteeringToken


class SteeringCompletedEvent(_Event, tag="steering.completed"):
    data: SteeringCompleted


class SystemMetricsEvent(_Event, tag="system.metrics"):
    """A monitoring sample, streamed live and never stored (``id`` is None)."""

    data: Sample


StreamEvent = Union[
    JobUpdatedEvent,
    JobProgressEvent,
    DatasetProgressEvent,
    ModelProgressEvent,
    ActivationsProgressEvent,
    TrainingProgressEvent,
    FeaturesProgressEvent,
    SteeringProgressEvent,
    DatasetUpdatedEvent,
    ModelUpdatedEvent,
    ActivationsUpdatedEvent,
    TrainingUpdatedEvent,
    TrainingCheckpointEvent,
    TrainingLogEvent,
    FeaturesUpdatedEvent,
    SteeringTokenEvent,
    SteeringCompletedEvent,
    SystemMetricsEvent,
]

# The payload type of each event type, for code that holds a (type, data) pair (the events table).
PAYLOADS: dict[str, type] = {
    str(event.__struct_config__.tag): get_type_hints(event)["data"] for event in get_args(StreamEvent)
}


def checked(type_: str, payload: Any) -> Any:
    """``payload`` when it is the Struct that events of type ``type_`` carry. Anything else is a
    programming error in the emitter (TypeError), caught where the event is made rather than by a UI
    that cannot read it."""
    expected = PAYLOADS.get(type_)
    if expected is None:
        raise TypeError(f"no event type {type_!r}")
    if type(payload) is expected:
        return payload
    raise TypeError(f"{type_} carries {expected.__name__}, not {type(payload).__name__}")
