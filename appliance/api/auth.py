"""Optional access token (MISTUDIO_TOKEN): when set, every /api call must carry it.

Accepted as ``Authorization: Bearer <token>``, an ``X-Mistudio-Token`` header, or the
``mistudio_token`` cookie (the UI sets the cookie so EventSource, which cannot send headers, works).
The UI's static assets stay public so the page can load and ask for the token.
"""

from __future__ import annotations

import hmac
from http.cookies import SimpleCookie

from litestar.types import ASGIApp, Receive, Scope, Send

import msgspec

from appliance.api.errors import ErrorBody, ErrorResponse
from appliance.timefmt import now_iso

COOKIE = "mistudio_token"


def _presented_token(scope: Scope) -> str | None:
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
    auth = headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    if "x-mistudio-token" in headers:
        return headers["x-mistudio-token"].strip()
    if "cookie" in headers:
        cookie = SimpleCookie()
        try:
            cookie.load(headers["cookie"])
        except Exception:  # noqa: BLE001 - a malformed cookie header is simply no token
            return None
        if COOKIE in cookie:
            return cookie[COOKIE].value
    return None


def require_token(app: ASGIApp, token: str) -> ASGIApp:
    """Wrap the whole ASGI app (not a Litestar middleware: those only run on matched routes, so an
    unknown /api path would answer 404 instead of 401)."""
    expected = token.encode()

    async def guarded(scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] == "http" and (path == "/api" or path.startswith("/api/")):
            presented = _presented_token(scope)
            if presented is None or not hmac.compare_digest(presented.encode(), expected):
                await _unauthorized(send)
                return
        await app(scope, receive, send)

    return guarded


async def _unauthorized(send: Send) -> None:
    body = msgspec.json.encode(ErrorResponse(ErrorBody(
        "UNAUTHORIZED", "This appliance requires an access token (MISTUDIO_TOKEN): send it as "
        "'Authorization: Bearer <token>'", {}, False, now_iso())))
    await send({"type": "http.response.start", "status": 401, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
        (b"www-authenticate", b"Bearer")]})
    await send({"type": "http.response.body", "body": body})
