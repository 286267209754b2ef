"""Appliance settings changed at run time (the rest is MISTUDIO_* configuration): for now, the
language-model labelling of features. API keys are write-only."""

from __future__ import annotations

import time
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, get, put

from appliance.api.envelope import Meta, meta
from appliance.api.state import ApiState, api_state
from appliance.contracts.labeling import SECRET, SETTINGS_KEY, LabelingSettings
from appliance.data.secrets import delete_secret, read_secret, write_secret
from appliance.errors import ValidationError


class LabelingUpdate(LabelingSettings, kw_only=True):
    api_key: Annotated[str, msgspec.Meta(max_length=500)] | None = None  # "" removes it; never returned


class LabelingView(LabelingSettings, kw_only=True):
    has_api_key: bool = False


class LabelingResponse(msgspec.Struct):
    data: LabelingView
    meta: Meta


async def load_labeling(api: ApiState) -> LabelingSettings:
    assert api.db is not None
    rows = await api.db.execute_fetchall("SELECT value FROM app_state WHERE key = ?", (SETTINGS_KEY,))
    return msgspec.json.decode(rows[0]["value"], type=LabelingSettings) if rows else LabelingSettings()


def _view(settings: LabelingSettings, api: ApiState) -> LabelingView:
    values: dict[str, Any] = msgspec.to_builtins(settings)
    return LabelingView(**values, has_api_key=read_secret(api.settings.data_dir, SECRET) is not None)


class SettingsController(Controller):
    path = "/api/settings"
    tags = ["settings"]

    @get("/labeling", summary="How features are labelled by a language model (the key is never shown)")
    async def get_labeling(self, request: Request) -> LabelingResponse:
        api = api_state(request)
        return LabelingResponse(_view(await load_labeling(api), api), meta())

    @put("/labeling", summary="Set the labelling provider: none, local (the SAE's model) or an OpenAI-compatible endpoint")
    async def put_labeling(self, request: Request, data: LabelingUpdate) -> LabelingResponse:
        api = api_state(request)
        assert api.db is not None
        values = msgspec.to_builtins(data)
        key = values.pop("api_key", None)
        settings = LabelingSettings(**values)
        if settings.provider == "openai" and not (settings.endpoint and settings.model):
            raise ValidationError("An OpenAI-compatible provider needs an endpoint and a model",
                                  details={"field": "endpoint"})
        if key == "":
            delete_secret(api.settings.data_dir, SECRET)
        elif key:
            write_secret(api.settings.data_dir, SECRET, key)
        async with api.db_lock:
            await api.db.execute(
                "INSERT INTO app_state (key, value, updated_at) VALUES (?, ?, ?) ON CONFLICT (key) DO UPDATE SET"
                " value = excluded.value, updated_at = excluded.updated_at",
                (SETTINGS_KEY, msgspec.json.encode(settings).decode(), time.time()))
        return LabelingResponse(_view(settings, api), meta())
