"""A streaming multipart/form-data reader for uploads.

Litestar's own form parser holds the whole body in memory; a dataset upload can be gigabytes on a
board with 8 GB of RAM, so the file part goes to disk chunk by chunk as it arrives and only small
text fields are kept in memory. One file part per request is all the appliance needs.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio

from appliance.errors import AppError, ValidationError

MAX_FIELD_BYTES = 64 * 1024
MAX_FIELDS = 32
MAX_HEADER_BYTES = 16 * 1024
WRITE_CHUNK = 1 << 20
# Route option of the endpoints that take a file: the access guard (appliance.api.access) lets
# multipart/form-data bodies reach those, and only JSON bodies reach every other endpoint.
FILE_UPLOAD = {"body": "multipart/form-data"}


def takes_file(handler: Any) -> bool:
    """The route handler was declared with ``opt=FILE_UPLOAD`` (its body is a multipart upload)."""
    return handler.opt.get("body") == FILE_UPLOAD["body"]


class PayloadTooLarge(AppError):
    code = "PAYLOAD_TOO_LARGE"
    status_code = 413


@dataclass
class Upload:
    fields: dict[str, str] = field(default_factory=dict)
    filename: str | None = None
    path: Path | None = None
    size: int = 0


def boundary_of(content_type: str) -> bytes:
    match = re.search(r'boundary="?([^";,]{1,200})"?', content_type or "")
    if not content_type.lower().startswith("multipart/form-data") or not match:
        raise ValidationError(
            "Send the file as multipart/form-data (curl -F file=@data.jsonl)", details={"field": "content-type"}
        )
    return match.group(1).encode("latin-1")


def _disposition(headers: bytes) -> tuple[str, str | None]:
    text = headers.decode("utf-8", errors="replace")
    for line in text.split("\r\n"):
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-disposition":
            field_name = re.search(r'\bname="([^"]*)"', value)
            filename = re.search(r'\bfilename="([^"]*)"', value)
            if field_name:
                return field_name.group(1), filename.group(1) if filename else None
    raise ValidationError("A multipart part has no Content-Disposition name", details={"field": "body"})


class _Reader:
    def __init__(self, chunks: AsyncIterator[bytes]):
        self._chunks = chunks
        self.buffer = bytearray()
        self.ended = False

    async def more(self) -> None:
        try:
            self.buffer += await self._chunks.__anext__()
        except StopAsyncIteration:
            self.ended = True

    async def until(self, marker: bytes, limit: int) -> bytes:
        """Everything before ``marker`` (consumed with it), for small things like headers."""
        while (index := self.buffer.find(marker)) < 0:
            if len(self.buffer) > limit:
                raise ValidationError("A multipart header or field is too long", details={"field": "body"})
            if self.ended:
                raise ValidationError("The upload ended early (truncated multipart body)", details={"field": "body"})
            await self.more()
        data = bytes(self.buffer[:index])
        del self.buffer[: index + len(marker)]
        return data


async def receive(
    chunks: AsyncIterator[bytes],
    content_type: str,
    file_field: str,
    dest: Path,
    max_file_bytes: int,
    before_write: Callable[[int], None] | None = None,
) -> Upload:
    """Read the form: text fields into ``Upload.fields``, the part named ``file_field`` into ``dest``.
    ``before_write(n)`` is called before each ``n`` bytes are written (a free-space check that raises).
    On any error the partial file is removed before the error propagates."""
    boundary = boundary_of(content_type)
    delimiter = b"\r\n--" + boundary
    reader = _Reader(chunks)
    upload = Upload()
    # The body starts with the first delimiter (without its leading CRLF); anything before is preamble.
    reader.buffer += b"\r\n"
    try:
        await reader.until(delimiter, MAX_HEADER_BYTES)
        while True:
            while len(reader.buffer) < 2 and not reader.ended:
                await reader.more()
            if reader.buffer[:2] == b"--":
                break  # closing delimiter
            if reader.buffer[:2] != b"\r\n":
                raise ValidationError("Malformed multipart body", details={"field": "body"})
            del reader.buffer[:2]
            name, filename = _disposition(await reader.until(b"\r\n\r\n", MAX_HEADER_BYTES))
            if filename is not None and name == file_field:
                if upload.path is not None:
                    raise ValidationError("Send one file per upload", details={"field": file_field})
                upload.filename, upload.path = filename, dest
                upload.size = await _to_file(reader, delimiter, dest, max_file_bytes, before_write)
            else:
                if len(upload.fields) >= MAX_FIELDS:
                    raise ValidationError("Too many form fields", details={"field": "body"})
                value = await reader.until(delimiter, MAX_FIELD_BYTES)
                upload.fields[name] = value.decode("utf-8", errors="replace")
        return upload
    except BaseException:
        dest.unlink(missing_ok=True)
        raise


async def _to_file(
    reader: _Reader, delimiter: bytes, dest: Path, max_bytes: int, before_write: Callable[[int], None] | None
) -> int:
    size = 0
    dest.parent.mkdir(parents=True, exist_ok=True)
    async with await anyio.open_file(dest, "wb") as out:
        while True:
            index = reader.buffer.find(delimiter)
            # Keep a tail that could be the start of a delimiter split across chunks.
            ready = index if index >= 0 else max(0, len(reader.buffer) - len(delimiter))
            if ready >= WRITE_CHUNK or index >= 0 or (reader.ended and ready):
                size += ready
                if size > max_bytes:
                    raise PayloadTooLarge(
                        f"The file is larger than the upload limit of {max_bytes:,} bytes (MISTUDIO_MAX_UPLOAD_BYTES)",
                        details={"limit": max_bytes},
                    )
                if before_write is not None:
                    before_write(ready)
                await out.write(bytes(reader.buffer[:ready]))
                del reader.buffer[:ready]
            if index >= 0:
                del reader.buffer[: len(delimiter)]
                return size
            if reader.ended:
                raise ValidationError("The upload ended early (truncated multipart body)", details={"field": "body"})
            await reader.more()
