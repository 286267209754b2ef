"""Appliance settings changed at run time, stored in ``app_state`` (the rest is MISTUDIO_*
configuration): for now, the language model that explains features and judges the explanations. Its API
key is a write-only secret: stored in the secrets folder, never returned, only whether one is set."""

from __future__ import annotations

import time
from typing import Annotated, Any

import msgspec

from appliance.contracts.labeling import SECRET, SETTINGS_KEY, LabelingSettings, decode_settings
from appliance.data import app_state
from appliance.data.database import AsyncDatabase
from appliance.data.layout import DataLayout
from appliance.data.secrets import delete_secret, read_secret, write_secret
from appliance.errors import ValidationError
from appliance.services.common import named_row


class LabelingUpdate(LabelingSettings, kw_only=True):
    api_key: Annotated[str, msgspec.Meta(max_length=500)] | None = None  # "" removes it; never returned


class LabelingView(LabelingSettings, kw_only=True):
    has_api_key: bool = False


async def labeling(db: AsyncDatabase) -> LabelingSettings:
    return decode_settings(await db.scalar(app_state.get(SETTINGS_KEY)))


def view(settings: LabelingSettings, layout: DataLayout) -> LabelingView:
    values: dict[str, Any] = msgspec.to_builtins(settings)
    return LabelingView(**values, has_api_key=read_secret(layout.root, SECRET) is not None)


async def set_labeling(db: AsyncDatabase, layout: DataLayout, update: LabelingUpdate) -> LabelingView:
    """Store new labelling settings; ``api_key`` "" removes the key, None keeps it."""
    values = msgspec.to_builtins(update)
    key = values.pop("api_key", None)
    settings = LabelingSettings(**values)
    if settings.provider == "openai" and not (settings.endpoint and settings.model):
        raise ValidationError(
            "An OpenAI-compatible provider needs an endpoint and a model", details={"field": "endpoint"}
        )
    if settings.local_model_id is not None:  # a registered model (its status is checked when a run starts)
        await named_row(db, "model", settings.local_model_id)
    if key == "":
        delete_secret(layout.root, SECRET)
    elif key:
        write_secret(layout.root, SECRET, key)
    await db.write(app_state.put(SETTINGS_KEY, msgspec.json.encode(settings).decode(), time.time()))
    return view(settings, layout)
