"""Settings of the optional language-model labelling of features, shared by the API (stored in
``app_state``; the key is a write-only secret) and the worker. Light: no torch."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

SETTINGS_KEY = "labeling"
SECRET = "labeling-api-key"


class LabelingSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    # "local": the SAE's own model writes the label (small models write weak labels);
    # "openai": any OpenAI-compatible chat endpoint (a local llama.cpp/vLLM server, or a cloud one).
    provider: Literal["none", "local", "openai"] = "none"
    endpoint: Annotated[str, msgspec.Meta(pattern=r"^https?://\S{1,500}$")] | None = None
    model: Annotated[str, msgspec.Meta(min_length=1, max_length=200)] | None = None
    examples: Annotated[int, msgspec.Meta(ge=1, le=20)] = 5  # contexts shown to the labeller per feature
    timeout_s: Annotated[float, msgspec.Meta(gt=0, le=300)] = 30.0


def decode_settings(stored: str | None) -> LabelingSettings:
    """The settings as stored in ``app_state`` (the defaults when nothing is stored): the API's
    settings page and the labelling endpoint read them the same way."""
    return msgspec.json.decode(stored, type=LabelingSettings) if stored else LabelingSettings()
