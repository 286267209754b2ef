"""Appliance settings changed at run time (the rest is MISTUDIO_* configuration): for now, the
language model that explains features and judges the explanations. API keys are write-only."""

from __future__ import annotations

from litestar import Controller, get, put

from appliance.api.envelope import Envelope, ok
from appliance.data.database import AsyncDatabase
from appliance.data.layout import DataLayout
from appliance.services import settings as service
from appliance.services.settings import LabelingUpdate, LabelingView


class SettingsController(Controller):
    path = "/api/settings"
    tags = ["settings"]

    @get("/labeling", summary="How features are explained and judged by a language model (the key is never shown)")
    async def get_labeling(self, db: AsyncDatabase, layout: DataLayout) -> Envelope[LabelingView]:
        return ok(service.view(await service.labeling(db), layout))

    @put(
        "/labeling",
        summary="Set the explaining provider: none, local (a registered model, default the SAE's) or an"
        " OpenAI-compatible endpoint",
    )
    async def put_labeling(self, db: AsyncDatabase, layout: DataLayout, data: LabelingUpdate) -> Envelope[LabelingView]:
        return ok(await service.set_labeling(db, layout, data))
