"""Which local files can become datasets, checked by content as well as by name. Light enough for the
API process, which validates an import before queueing it."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, cast

from appliance.errors import ValidationError

# The readers of the `datasets` library a file is loaded with.
FileFormat = Literal["json", "csv", "parquet", "text"]
FORMATS: dict[str, FileFormat] = {
    ".jsonl": "json",
    ".json": "json",
    ".csv": "csv",
    ".parquet": "parquet",
    ".txt": "text",
}


def detect_format(path: Path, declared: str | None) -> FileFormat:
    fmt = declared or FORMATS.get(path.suffix.lower())
    if fmt not in ("json", "csv", "parquet", "text"):
        raise ValidationError(
            f"Unsupported file type {path.suffix!r}: use .jsonl, .json, .csv, .parquet or .txt",
            details={"field": "format"},
        )
    with path.open("rb") as handle:
        head = handle.read(8192)
    if fmt == "parquet":
        if not head.startswith(b"PAR1"):
            raise ValidationError("The file is not a Parquet file (no PAR1 header)", details={"field": "path"})
    elif b"\x00" in head:
        raise ValidationError("The file looks binary, not text", details={"field": "path"})
    else:
        try:
            head.decode("utf-8")
        except UnicodeDecodeError as exc:
            if exc.start < len(head) - 4:  # a multi-byte character cut at the 8 KB boundary is fine
                raise ValidationError("The file is not UTF-8 text", details={"field": "path"}) from None
    return cast(FileFormat, fmt)
