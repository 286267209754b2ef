"""Tokenizers on this device and the tokenization preview (the chips of the Tokenization tab)."""

from __future__ import annotations

from litestar import Controller, get, post

from appliance.api.apidoc import errors
from appliance.api.envelope import Envelope, ok
from appliance.data.database import AsyncDatabase
from appliance.data.layout import DataLayout
from appliance.services import tokenizers as service
from appliance.services.tokenizers import Preview, PreviewRequest, TokenizerInfo


class TokenizeController(Controller):
    path = "/api"
    tags = ["datasets"]

    @get("/tokenizers", summary="Tokenizers available for tokenizing datasets")
    async def tokenizers(self, db: AsyncDatabase, layout: DataLayout) -> Envelope[list[TokenizerInfo]]:
        return ok(await service.tokenizers(db, layout))

    @post("/tokenize/preview", responses=errors(404), status_code=200, summary="Tokenize a text: token pieces and ids")
    async def preview(self, layout: DataLayout, data: PreviewRequest) -> Envelope[Preview]:
        return ok(await service.preview(layout, data))
