"""JSON request bodies, decoded strictly: a value of the wrong type is refused, never coerced.

Litestar converts every handler argument with msgspec's lax rules, which query strings and path
segments need ("5" → 5) but a JSON body does not: there, ``"total_steps": "100"`` is a client's
mistake like any other wrong type. This request class checks the body against the handler's
``data`` type with strict rules before Litestar's own conversion sees it, and turns a body nested
too deep for the decoder (RecursionError) into the same 400 as any malformed JSON."""

from __future__ import annotations

import re
from typing import Any

import msgspec
from litestar import Request
from litestar.exceptions import ValidationException
from litestar.types import Empty

from appliance.errors import ValidationError

_AT = re.compile(r"^(?P<message>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.S)


def _error(exc: msgspec.ValidationError) -> ValidationException:
    """The error Litestar raises for a lax conversion, in the same shape (key, message, source)."""
    match = _AT.match(str(exc))
    message = match.group("message") if match else str(exc)
    item: dict[str, Any] = {"message": message, "source": "body"}
    path = (match.group("path") or "") if match else ""
    key = re.sub(r"\[(\d+)\]", r".\1", path).lstrip(".")
    if key:
        item["key"] = key
    return ValidationException(detail=f"Validation failed for {message}", extra=[item])


class StrictJsonRequest(Request):
    async def json(self) -> Any:
        if self._json is Empty and self._connection_state.json is Empty:
            body = await self.body()
            try:
                value = msgspec.json.decode(body or b"null")
            except msgspec.DecodeError as exc:
                raise ValidationError(f"The body is not valid JSON: {exc}", details={"field": "body"}) from None
            except RecursionError:
                raise ValidationError("The JSON body is nested too deeply", details={"field": "body"}) from None
            field = self.route_handler.parsed_data_field
            if field is not None:
                try:
                    msgspec.convert(value, field.raw, strict=True)
                except msgspec.ValidationError as exc:
                    raise _error(exc) from None
            self._json = self._connection_state.json = value
        return await super().json()
