"""Every error leaves the API in one shape (docs/ARCHITECTURE.md):
``{"error": {"code", "message", "details", "retryable", "timestamp"}}``. Never a stack trace."""

from __future__ import annotations

import logging
from typing import Any

import msgspec
from litestar import MediaType, Request, Response
from litestar.exceptions import HTTPException, ValidationException

from appliance.api.field_errors import label, sentence
from appliance.api.state import api_state
from appliance.data.storage import is_disk_full, storage_error
from appliance.errors import AppError
from appliance.timefmt import now_iso

log = logging.getLogger("mistudio.api")

_CODES = {
    400: "VALIDATION_ERROR",
    401: "UNAUTHORIZED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    409: "CONFLICT",
    413: "PAYLOAD_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
    422: "VALIDATION_ERROR",
    429: "RATE_LIMITED",
    503: "SERVICE_UNAVAILABLE",
}


class ErrorBody(msgspec.Struct):
    code: str
    message: str
    details: dict[str, Any]
    retryable: bool
    timestamp: str


class ErrorResponse(msgspec.Struct):
    error: ErrorBody


def error_response(
    status: int,
    code: str,
    message: str,
    details: dict[str, Any] | None = None,
    retryable: bool = False,
    headers: dict[str, str] | None = None,
) -> Response[ErrorResponse]:
    body = ErrorResponse(ErrorBody(code, message, details or {}, retryable, now_iso()))
    return Response(body, status_code=status, media_type=MediaType.JSON, headers=headers)


def app_error_handler(request: Request[Any, Any, Any], exc: AppError) -> Response[ErrorResponse]:
    return error_response(exc.status_code, exc.code, exc.message, exc.details, exc.retryable)


def http_error_handler(request: Request[Any, Any, Any], exc: HTTPException) -> Response[ErrorResponse]:
    status = exc.status_code
    if status >= 500:
        return internal_error_handler(request, exc)
    details: dict[str, Any] = {}
    message = exc.detail or "Bad request"
    if isinstance(exc, ValidationException):
        if isinstance(exc.extra, list) and exc.extra:
            # The machine form (key, msgspec's message, source) for clients; the label and a sentence for people.
            details["errors"] = [_field_error(item) for item in exc.extra]
            message = " ".join(sentence(str(e.get("key", "")), str(e["message"])) for e in details["errors"])
        elif exc.extra:
            details["errors"] = [{"message": str(exc.extra)}]
    if status == 405:
        message = f"Method {request.method} is not allowed on {request.url.path}"
    if status == 404 and message == "Not Found":
        message = f"No such endpoint: {request.method} {request.url.path}"
    code = _CODES.get(status, f"HTTP_{status}")
    headers = {k: v for k, v in (exc.headers or {}).items() if k.lower() in ("allow", "www-authenticate")}
    return error_response(status, code, message, details, status in (429, 503), headers=headers or None)


def _field_error(item: object) -> dict[str, Any]:
    if not isinstance(item, dict):
        return {"message": str(item)}
    error = {k: v for k, v in item.items() if k in ("key", "message", "source")}
    error.setdefault("message", "invalid")
    if error.get("key"):
        error["label"] = label(str(error["key"]))
    return error


def internal_error_handler(request: Request[Any, Any, Any], exc: Exception) -> Response[ErrorResponse]:
    if is_disk_full(exc):
        # A full data disk is the device's state, not a bug: INSUFFICIENT_STORAGE, one log line. What the
        # request wrote was a transaction (rolled back) or a file its handler removes.
        data_dir = api_state(request).settings.data_dir
        log.warning("%s %s: the data disk is full (%s)", request.method, request.url.path, exc)
        return app_error_handler(request, storage_error(exc, "this request's data", data_dir))
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(500, "INTERNAL", "Internal error; the server log has the details", {}, True)


EXCEPTION_HANDLERS = {
    AppError: app_error_handler,
    HTTPException: http_error_handler,
    Exception: internal_error_handler,
}
