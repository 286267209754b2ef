"""Optional access token (MISTUDIO_TOKEN): when set, every /api call must carry it.

Accepted as ``Authorization: Bearer <token>``, an ``X-Mistudio-Token`` header, or the
``mistudio_token`` cookie (the UI sets the cookie so EventSource, which cannot send headers, works).
The UI's static assets stay public so the page can load and ask for the token. Where it is
required is decided in appliance.api.access, with the other checks every request passes.
"""

from __future__ import annotations

from collections.abc import Iterable
from http.cookies import SimpleCookie

COOKIE = "mistudio_token"


def presented_token(raw_headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in raw_headers}
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
