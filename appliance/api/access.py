"""Who may use the appliance: one ASGI guard in front of the whole app, one decision per request.

It wraps the app rather than being a Litestar middleware because those run only on matched routes
(an unknown /api path would answer 404 instead of 401) and the Host check must cover the UI too.
In order, each refusal in the error envelope:

1. Host (DNS rebinding: a page on another site reaching the device through a name its owner
   points at the device's address): only IP literals, ``localhost``, this machine's hostname,
   ``<hostname>.local`` and MISTUDIO_ALLOWED_HOSTS. Else 421 MISDIRECTED_REQUEST.
2. Token (MISTUDIO_TOKEN, when set): every path under /api. Else 401 UNAUTHORIZED.
3. Origin: a state-changing request (POST, PUT, PATCH, DELETE) that carries an Origin must come
   from a page of the appliance itself (the origin the request is addressed to). curl sends no
   Origin; a browser always sends it on these methods. Else 403 FORBIDDEN.
4. Content type: such a request with a body must declare JSON, or multipart/form-data where the
   endpoint takes a file (handlers with ``opt=multipart.FILE_UPLOAD``). A browser sends text/plain, form and
   multipart bodies to another site without asking first (no CORS preflight); JSON it does not.
   Else 415 UNSUPPORTED_MEDIA_TYPE.

The path checked is the one the router dispatches: Litestar strips the root path from the server's
percent-decoded path and normalises it (litestar.utils.normalize_path: collapse repeated slashes,
trim the ends), so ``//api/jobs`` and ``/%2Fapi%2Fjobs`` are /api/jobs here exactly as there.
"""

from __future__ import annotations

import hmac
import ipaddress
import socket
from collections.abc import Awaitable, Iterable

import msgspec
from litestar import Litestar
from litestar.routes import HTTPRoute
from litestar.types import ASGIApp, HTTPResponseBodyEvent, HTTPResponseStartEvent, Receive, Scope, Send
from litestar.utils import normalize_path

from appliance.api.auth import presented_token
from appliance.api.errors import ErrorBody, ErrorResponse
from appliance.api.multipart import takes_file
from appliance.config import Settings
from appliance.timefmt import now_iso

API_PREFIX = "/api"
# The routes served without the token: the UI (its index, client-side routes and every file of
# webui/dist, from Litestar's static files router) and the API reference with its assets (/schema
# and below). check_routes() refuses to start an app with a route that is neither here nor under
# API_PREFIX, so a handler added elsewhere cannot become public by accident: add it here on purpose.
PUBLIC_ROUTES = ("/", "/{file_path:path}", "/schema")

STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_JSON = b"application/json"
_MULTIPART = b"multipart/form-data"
_HOST_CACHE_MAX = 256


def check_routes(app: Litestar) -> frozenset[str]:
    """Every route is under API_PREFIX or public; returns the paths of the file-upload endpoints."""
    uploads: set[str] = set()
    for route in app.routes:
        path = route.path
        if not (
            _under(path, API_PREFIX)
            or path in PUBLIC_ROUTES
            or any(_under(path, public) for public in PUBLIC_ROUTES if public != "/")
        ):
            raise RuntimeError(f"route {path} is neither under {API_PREFIX} nor in access.PUBLIC_ROUTES")
        for handler in route.route_handlers if isinstance(route, HTTPRoute) else [route.route_handler]:
            if takes_file(handler):
                if "{" in path:  # the guard matches upload paths exactly
                    raise RuntimeError(f"file-upload route {path} must not have path parameters")
                uploads.add(path)
    return frozenset(uploads)


def default_host_names() -> set[str]:
    hostname = socket.gethostname().lower().rstrip(".")
    return {"localhost", hostname, f"{hostname.split('.')[0]}.local", f"{hostname}.local"} - {"", ".local"}


class HostNames:
    """Whether a Host header names this device (any port); answers are cached per header value."""

    def __init__(self, extra: Iterable[str]):
        extra = tuple(extra)
        self.any = "*" in extra
        self.names = frozenset(
            name for name in default_host_names() | set(extra) if name and name != "*" and not _is_ip(name)
        )
        self._seen: dict[bytes, bool] = {}

    def allows(self, host: bytes) -> bool:
        known = self._seen.get(host)
        if known is None:
            known = self.any or self._decide(host.decode("latin-1").strip().lower())
            if len(self._seen) >= _HOST_CACHE_MAX:  # a client sending endless names cannot grow it
                self._seen.clear()
            self._seen[host] = known
        return known

    def _decide(self, host: str) -> bool:
        if host.startswith("["):  # [v6]:port
            literal, bracket, _ = host[1:].partition("]")
            return bool(bracket) and _is_ip(literal)
        name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
        name = name.rstrip(".")
        return name in self.names or _is_ip(name)

    def describe(self) -> str:
        return ", ".join(sorted(self.names))


def guard(app: Litestar, settings: Settings) -> ASGIApp:
    uploads = check_routes(app)
    # The name it listens on (MISTUDIO_HOST) is its own too; an address there is an IP literal anyway.
    hosts = HostNames((*settings.allowed_hosts, settings.host.lower().rstrip(".")))
    expected = settings.token.encode() if settings.token else None

    # The hot path of every request: the checks are small functions taking the header values found
    # in one pass, so an admitted request allocates nothing for them; a refusal builds its answer.
    async def guarded(scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind != "http" and kind != "websocket":
            await app(scope, receive, send)  # lifespan
            return
        host = origin = content_type = length = chunked = None
        for name, value in scope["headers"]:  # one pass; names arrive lower-cased (ASGI)
            if name == b"host":
                host = value
            elif name == b"origin":
                origin = value
            elif name == b"content-type":
                content_type = value
            elif name == b"content-length":
                length = value
            elif name == b"transfer-encoding":
                chunked = value
        if host is not None and not hosts.allows(host):
            await _refuse_host(scope, send, host, hosts)
            return
        path: str | None = None
        if expected is not None:
            path = _dispatched_path(scope)
            if _under(path, API_PREFIX) and not _has_token(scope, expected):
                await _refuse_token(scope, send)
                return
        if kind == "http" and scope.get("method") in STATE_CHANGING:
            if origin is not None and not _same_origin(origin, host):
                await _refuse_origin(scope, send, origin)
                return
            upload = (path or _dispatched_path(scope)) in uploads
            media = _media_type(content_type)
            wanted = _MULTIPART if upload else _JSON
            if _wrong_media(media, wanted, length, chunked):
                await _refuse_media(scope, send, upload, wanted, media)
                return
        await app(scope, receive, send)

    return guarded


def _has_token(scope: Scope, expected: bytes) -> bool:
    token = presented_token(scope["headers"])
    return token is not None and hmac.compare_digest(token.encode(), expected)


def _media_type(content_type: bytes | None) -> bytes | None:
    """The Content-Type without its parameters (``; charset=...``, ``; boundary=...``), lower-cased."""
    return content_type.split(b";", 1)[0].strip().lower() if content_type is not None else None


def _wrong_media(media: bytes | None, wanted: bytes, length: bytes | None, chunked: bytes | None) -> bool:
    """A declared type other than ``wanted``, or a body (chunked, or a length above 0) with none."""
    if media is not None:
        return media != wanted
    return chunked is not None or (length is not None and length.strip() not in (b"0", b""))


# The refusals return _refuse's coroutine for the guard to await (no coroutine of their own).
def _refuse_host(scope: Scope, send: Send, host: bytes, hosts: HostNames) -> Awaitable[None]:
    shown = host.decode("latin-1")[:100]
    return _refuse(
        scope,
        send,
        421,
        "MISDIRECTED_REQUEST",
        f"This appliance does not answer to the name {shown!r} (a page on another site may "
        f"be reaching it through its own DNS name). Known names: {hosts.describe()} and "
        "IP addresses; add others to MISTUDIO_ALLOWED_HOSTS",
        {"host": shown},
    )


def _refuse_token(scope: Scope, send: Send) -> Awaitable[None]:
    return _refuse(
        scope,
        send,
        401,
        "UNAUTHORIZED",
        "This appliance requires an access token (MISTUDIO_TOKEN): send it as 'Authorization: Bearer <token>'",
        {},
        [(b"www-authenticate", b"Bearer")],
    )


def _refuse_origin(scope: Scope, send: Send, origin: bytes) -> Awaitable[None]:
    shown = origin.decode("latin-1")[:100]
    return _refuse(
        scope,
        send,
        403,
        "FORBIDDEN",
        f"Cross-origin request refused: the page at origin {shown!r} is not this appliance's "
        "own. Changes come from the appliance's UI, or from clients that send no Origin "
        "header (curl, scripts)",
        {"origin": shown},
    )


def _refuse_media(scope: Scope, send: Send, upload: bool, wanted: bytes, media: bytes | None) -> Awaitable[None]:
    received = media.decode("latin-1")[:100] if media is not None else None
    return _refuse(
        scope,
        send,
        415,
        "UNSUPPORTED_MEDIA_TYPE",
        _media_message(upload, received),
        {"field": "content-type", "expected": wanted.decode(), "received": received},
    )


def _dispatched_path(scope: Scope) -> str:
    """The path as Litestar's router sees it (litestar/_asgi/asgi_router.py: ASGIRouter.__call__)."""
    path = scope["path"]
    if root_path := scope.get("root_path", ""):
        path = path.split(root_path, maxsplit=1)[-1]
    return normalize_path(path)


def _under(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith(prefix + "/")


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def _same_origin(origin: bytes, host: bytes | None) -> bool:
    """The Origin names the host and port the request is addressed to. Either scheme: nothing else can
    serve that host and port, and behind a TLS proxy the page's origin is https."""
    scheme, sep, netloc = origin.strip().lower().partition(b"://")
    return host is not None and bool(sep) and scheme in (b"http", b"https") and netloc == host.strip().lower()


def _media_message(upload: bool, received: str | None) -> str:
    got = f"got {received!r}" if received else "it has none"
    if upload:
        return f"This endpoint takes a file as multipart/form-data (curl -F file=@data.jsonl); {got}"
    return f"Send the body as JSON with the header 'content-type: application/json'; {got}"


async def _refuse(
    scope: Scope,
    send: Send,
    status: int,
    code: str,
    message: str,
    details: dict,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    if scope["type"] == "websocket":  # closing before accepting answers the handshake with 403
        await send({"type": "websocket.close", "code": 1008, "reason": code})
        return
    body = msgspec.json.encode(ErrorResponse(ErrorBody(code, message, details, False, now_iso())))
    start: HTTPResponseStartEvent = {
        "type": "http.response.start",
        "status": status,
        "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            *(headers or []),
        ],
    }
    end: HTTPResponseBodyEvent = {"type": "http.response.body", "body": body, "more_body": False}
    await send(start)
    await send(end)
