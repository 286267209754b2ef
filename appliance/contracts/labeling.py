"""Settings of the optional language-model explanations of features and their judges (detection and
fuzzing: appliance.pipeline.features.explain), shared by the API (stored in ``app_state``; the key is a
write-only secret) and the worker. Light: no torch."""

from __future__ import annotations

from typing import Annotated, Literal
from urllib.parse import urlsplit

import msgspec

SETTINGS_KEY = "labeling"
SECRET = "labeling-api-key"


class LabelingSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    # "local": a model registered in the appliance answers on the worker (``local_model_id``, ideally an
    # instruction-tuned one; None: the SAE's own model, whose explanations are weak);
    # "openai": any OpenAI-compatible chat endpoint (a local llama.cpp/vLLM/Ollama server, or a cloud one).
    provider: Literal["none", "local", "openai"] = "none"
    endpoint: Annotated[str, msgspec.Meta(pattern=r"^https?://\S{1,500}$")] | None = None
    model: Annotated[str, msgspec.Meta(min_length=1, max_length=200)] | None = None
    local_model_id: Annotated[str, msgspec.Meta(max_length=100)] | None = None  # a model's id (m_...)
    # Contexts the explainer sees per feature: this many of its strongest, and as many from across its range.
    examples: Annotated[int, msgspec.Meta(ge=1, le=20)] = 10
    # The judges' held-out contexts per feature: detection shows this many activating and as many
    # non-activating ones; fuzzing this many correctly and as many randomly highlighted.
    examples_per_class: Annotated[int, msgspec.Meta(ge=1, le=50)] = 10
    timeout_s: Annotated[float, msgspec.Meta(gt=0, le=300)] = 30.0
    concurrency: Annotated[int, msgspec.Meta(ge=1, le=32)] = 4  # features in flight at an endpoint (local: 1)
    max_calls: Annotated[int, msgspec.Meta(ge=1, le=1_000_000)] = 5000  # language-model calls per run, by default


def explainer_key(settings: LabelingSettings, local_model_id: str) -> str:
    """What names an explainer in the cache of results (``feature_explanations.explainer``): the endpoint's
    model and host ("openai:<model>@<host>", no path and no key), or the local model's id ("local:<id>")."""
    if settings.provider == "local":
        return f"local:{local_model_id}"
    url = urlsplit(settings.endpoint or "")  # host and port only: a URL's user:password never names anything
    return f"openai:{settings.model}@{url.hostname or ''}{f':{url.port}' if url.port else ''}"


def decode_settings(stored: str | None) -> LabelingSettings:
    """The settings as stored in ``app_state`` (the defaults when nothing is stored): the API's
    settings page and the labelling endpoint read them the same way."""
    return msgspec.json.decode(stored, type=LabelingSettings) if stored else LabelingSettings()
