"""Parameters of the dataset jobs (``dataset.import``, ``dataset.download``, ``dataset.demo``,
``dataset.tokenize``): built and encoded by the API, decoded by the runner for the handler."""

from __future__ import annotations

from typing import Literal

import msgspec

from appliance.contracts.dataset_formats import FileFormat
from appliance.contracts.tokenization import TokenizeSettings

TxtMode = Literal["line", "paragraph"]


class ImportParams(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    dataset_id: str
    path: str  # absolute, already checked by the API to lie inside the imports or uploads folder
    format: FileFormat
    text_column: str = "text"
    txt_mode: TxtMode = "line"  # one sample per line, or per blank-line separated block
    remove_source: bool = False  # an upload: the Arrow copy replaces it once ingested


class DownloadParams(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    dataset_id: str
    repo_id: str
    config: str | None = None
    split: str = "train"
    max_samples: int | None = None  # stream only this many rows instead of downloading the split
    text_column: str = "text"


class DemoParams(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    dataset_id: str


class TokenizeParams(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    dataset_id: str
    settings: TokenizeSettings
