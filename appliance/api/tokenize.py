"""Tokenizers on this device and the tokenization preview (the chips of the Tokenization tab)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import anyio
import msgspec
from litestar import Controller, Request, get, post

from appliance.api.apidoc import errors
from appliance.api.envelope import Meta, meta
from appliance.api.state import api_state
from appliance.contracts.tokenization import DEMO_TOKENIZER, TokenizeSettings, Truncation, load_tokenizer, pieces, truncated


class TokenizerInfo(msgspec.Struct):
    id: str
    name: str
    source: str  # "demo" or "model"
    vocab_size: int


class PreviewRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    text: Annotated[str, msgspec.Meta(max_length=20_000)]
    tokenizer: Annotated[str, msgspec.Meta(min_length=1, max_length=100)] = DEMO_TOKENIZER
    max_length: Annotated[int, msgspec.Meta(ge=1, le=4096)] = 512
    truncation: Truncation = "longest_first"
    add_special_tokens: bool = True


class PreviewToken(msgspec.Struct):
    id: int
    text: str
    special: bool


class Preview(msgspec.Struct):
    tokenizer: str
    tokens: list[PreviewToken]
    count: int
    truncated: bool


class PreviewResponse(msgspec.Struct):
    data: Preview
    meta: Meta


class TokenizerListResponse(msgspec.Struct):
    data: list[TokenizerInfo]
    meta: Meta


def _preview(data: PreviewRequest, data_dir: Path) -> Preview:
    settings = TokenizeSettings(tokenizer=data.tokenizer, max_length=data.max_length, truncation=data.truncation,
                                padding="do_not_pad", add_special_tokens=data.add_special_tokens)
    settings.check()
    encoding = load_tokenizer(data.tokenizer, data_dir, settings).encode(
        data.text, add_special_tokens=data.add_special_tokens)
    texts = pieces(encoding, data.text, load_tokenizer(data.tokenizer, data_dir))
    tokens = [PreviewToken(i, t, bool(s)) for i, t, s in zip(encoding.ids, texts, encoding.special_tokens_mask)]
    return Preview(data.tokenizer, tokens, len(tokens), truncated([encoding], [data.text], settings, data_dir)[0])


class TokenizeController(Controller):
    path = "/api"
    tags = ["datasets"]

    @get("/tokenizers", summary="Tokenizers available for tokenizing datasets")
    async def tokenizers(self, request: Request) -> TokenizerListResponse:
        api = api_state(request)
        data_dir = api.settings.data_dir
        demo = await anyio.to_thread.run_sync(load_tokenizer, DEMO_TOKENIZER, data_dir)
        found = [TokenizerInfo(DEMO_TOKENIZER, "Demo tokenizer (byte-level BPE; the demo model's)", "demo",
                               demo.get_vocab_size(with_added_tokens=True))]
        assert api.db is not None
        # Each ready model with a fast tokenizer (tokenizer.json) brings its own, named by the model id.
        for row in await api.db.execute_fetchall(
                "SELECT id, name, architecture FROM models WHERE status = 'ready' AND source != 'demo'"
                " ORDER BY created_at DESC"):
            if (data_dir / "models" / row["id"] / "tokenizer.json").is_file():
                vocab = msgspec.json.decode(row["architecture"]).get("vocab_size") if row["architecture"] else None
                found.append(TokenizerInfo(row["id"], f"{row['name']} (model)", "model", vocab or 0))
        return TokenizerListResponse(found, meta())

    @post("/tokenize/preview", responses=errors(404), status_code=200, summary="Tokenize a text: token pieces and ids")
    async def preview(self, request: Request, data: PreviewRequest) -> PreviewResponse:
        result = await anyio.to_thread.run_sync(_preview, data, api_state(request).settings.data_dir)
        return PreviewResponse(result, meta())
