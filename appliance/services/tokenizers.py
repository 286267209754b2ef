"""Tokenizers on this device and the preview of a text's tokens: which tokenizers a dataset can be
tokenized with, and what one makes of a text (the Tokenization tab's chips)."""

from __future__ import annotations

from typing import Annotated

import anyio
import msgspec

from appliance.contracts.tokenization import (
    DEMO_TOKENIZER,
    TokenizeSettings,
    Truncation,
    load_tokenizer,
    pieces,
    truncated,
)
from appliance.data import models
from appliance.data.database import AsyncDatabase
from appliance.data.layout import DataLayout


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


def _preview_now(data: PreviewRequest, layout: DataLayout) -> Preview:
    settings = TokenizeSettings(
        tokenizer=data.tokenizer,
        max_length=data.max_length,
        truncation=data.truncation,
        padding="do_not_pad",
        add_special_tokens=data.add_special_tokens,
    )
    settings.check()
    encoding = load_tokenizer(data.tokenizer, layout.root, settings).encode(
        data.text, add_special_tokens=data.add_special_tokens
    )
    texts = pieces(encoding, data.text, load_tokenizer(data.tokenizer, layout.root))
    tokens = [PreviewToken(i, t, bool(s)) for i, t, s in zip(encoding.ids, texts, encoding.special_tokens_mask)]
    return Preview(data.tokenizer, tokens, len(tokens), truncated([encoding], [data.text], settings, layout.root)[0])


async def tokenizers(db: AsyncDatabase, layout: DataLayout) -> list[TokenizerInfo]:
    """The demo tokenizer, then each ready model with a fast tokenizer (tokenizer.json), named by the
    model's id."""
    demo = await anyio.to_thread.run_sync(load_tokenizer, DEMO_TOKENIZER, layout.root)
    found = [
        TokenizerInfo(
            DEMO_TOKENIZER,
            "Demo tokenizer (byte-level BPE; the demo model's)",
            "demo",
            demo.get_vocab_size(with_added_tokens=True),
        )
    ]
    for row in await db.all(models.with_own_tokenizer()):
        if (layout.model(row["id"]) / "tokenizer.json").is_file():
            vocab = msgspec.json.decode(row["architecture"]).get("vocab_size") if row["architecture"] else None
            found.append(TokenizerInfo(row["id"], f"{row['name']} (model)", "model", vocab or 0))
    return found


async def preview(layout: DataLayout, data: PreviewRequest) -> Preview:
    """Off the event loop: a long text takes milliseconds to tokenize."""
    return await anyio.to_thread.run_sync(_preview_now, data, layout)
