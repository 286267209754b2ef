"""The OpenAPI document (/schema/openapi.json) made to say what the API answers.

Litestar documents each handler's success and, for handlers with inputs, a 400 in its own error
shape. The API answers otherwise: every error in one envelope (appliance.api.errors), statuses that
the access guard, the exception handlers and the job queue add around every handler, 202 for work
that is queued, Server-Sent Events as text/event-stream. Two parts say so:

- on a route decorator, what only that handler can answer: ``responses=errors(404, 409)`` for its
  own refusals, ``accepted_too()`` for a 202 beside its 200, ``opt=alternatives("text/csv")`` for a
  second content type of its success, ``form_fields(Struct)`` for the fields of a file upload;
- ``complete(app, settings)``, run once at start, for what follows from a route's shape: the same
  rule for every route (see ``_statuses``), each error pointing at the one envelope component.

An event stream's ``data:`` is documented as ``StreamEvent``, the union of every event
(appliance.contracts.events). ``python -m appliance.api.apidoc FILE`` writes the whole document
without serving it: the web UI's TypeScript types are generated from that file.
"""

from __future__ import annotations

from dataclasses import fields, is_dataclass
from http import HTTPStatus
from typing import Any

import msgspec
from litestar import Litestar
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import (
    OpenAPIFormat,
    OpenAPIMediaType,
    OpenAPIResponse,
    OpenAPIType,
    Operation,
    Parameter,
    Reference,
    RequestBody,
    Schema,
)
from litestar.response import ServerSentEvent
from litestar.routes import HTTPRoute

from appliance.api.access import STATE_CHANGING
from appliance.api.errors import ErrorResponse
from appliance.api.multipart import takes_file
from appliance.api.queueing import AcceptedResponse
from appliance.config import Settings
from appliance.contracts.events import StreamEvent

_COMPONENTS = "#/components/schemas/{name}"
_ERROR = Reference(ref=_COMPONENTS.format(name="ErrorResponse"))
_UPLOAD = "multipart/form-data"
# How the job-creating routes' answer is named: the one-shape wrapper, or the generic Envelope[Accepted].
_ACCEPTED_REFS = ("/AcceptedResponse", "/Envelope_appliance.api.envelope.Accepted_")
_STREAM_EVENT = "StreamEvent"  # the component naming the union of every event (appliance.contracts.events)

# What each status means here, with the error codes it carries.
_MEANING = {
    400: "VALIDATION_ERROR: a parameter, id or body field is malformed or out of range",
    401: "UNAUTHORIZED: this appliance has an access token (MISTUDIO_TOKEN) and the request did not carry it",
    403: "FORBIDDEN: a state-changing request from a web page of another origin",
    404: "NOT_FOUND: no resource with that id (or no such route)",
    409: "CONFLICT: the resource is not in a state that allows this (busy, not ready, in use, exists)",
    413: "PAYLOAD_TOO_LARGE: the body is larger than the limit",
    415: "UNSUPPORTED_MEDIA_TYPE: the body is not sent as the content type this endpoint takes",
    421: "MISDIRECTED_REQUEST: the Host header does not name this device (MISTUDIO_ALLOWED_HOSTS)",
    502: "UPSTREAM_UNAVAILABLE: the worker (or a service it called) did not answer in time",
    503: "INSUFFICIENT_MEMORY (the job can never fit this device's memory budget) or NOT_READY",
    507: "INSUFFICIENT_STORAGE: the data disk would fall below its reserve (MISTUDIO_DISK_RESERVE_MB)",
}

# Path parameters that are resource ids, by their type prefix (appliance.ids); template ids by route.
_ID_PREFIXES = {"job_id": "job", "dataset_id": "ds", "model_id": "m", "activation_id": "act", "training_id": "tr"}
_TEMPLATE_PREFIXES = {"/api/templates/extraction": "et", "/api/templates/training": "tt", "/api/steering/presets": "sp"}


def errors(*statuses: int) -> dict[int, ResponseSpec]:
    """The ``responses=`` of a route that can also answer ``statuses`` (beyond what its shape implies)."""
    return {
        status: ResponseSpec(ErrorResponse, generate_examples=False, description=_MEANING[status])
        for status in statuses
    }


def accepted_too() -> dict[int, ResponseSpec]:
    """The ``responses=`` entry of a route that answers 200 with a result, or 202 when it queues the work."""
    return {
        202: ResponseSpec(
            AcceptedResponse,
            generate_examples=False,
            description="Accepted: the work was queued as a job; follow it at /api/jobs/{job_id}",
        )
    }


def alternatives(*media_types: str) -> dict[str, Any]:
    """The ``opt=`` of a route whose success also comes as ``media_types`` (a query parameter picks)."""
    return {"also_as": media_types}


def form_fields(fields: type[msgspec.Struct]) -> dict[str, Any]:
    """``opt=`` entry naming the Struct of a file upload's other form fields (documented beside `file`)."""
    return {"form_fields": fields}


def complete(app: Litestar, settings: Settings) -> None:
    """Finish the document Litestar built from the routes (it is built once and served as is)."""
    openapi = app.openapi_schema
    assert openapi.components is not None and openapi.paths is not None
    _, components = msgspec.json.schema_components((ErrorResponse,), ref_template=_COMPONENTS)
    schemas = openapi.components.schemas = dict(openapi.components.schemas or {})
    schemas.update(components)  # the envelope as msgspec encodes it: ErrorResponse and ErrorBody
    _event_components(schemas)
    for schema in schemas.values():
        _any_of(schema)
    for route in app.routes:
        if not isinstance(route, HTTPRoute) or route.path_format not in openapi.paths:
            continue
        item = openapi.paths[route.path_format]
        for handler in route.route_handlers:
            if not handler.resolve_include_in_schema():
                continue
            for method in handler.http_methods:
                operation = getattr(item, method.lower(), None)
                if operation is not None:
                    _complete(operation, handler, method, route.path_format, settings)
                    _body_ids(operation, schemas)
                    _any_of(operation)


def _id_pattern(prefix: str) -> str:
    return f"^{prefix}_[A-Za-z0-9_-]{{8,64}}$"  # appliance.ids


def _body_ids(operation: Operation, schemas: dict[str, Any]) -> None:
    """Resource ids named in a JSON body (model_id, dataset_id, ...) have their id format too."""
    body = operation.request_body
    media = body.content.get("application/json") if isinstance(body, RequestBody) else None
    if media is None or not isinstance(media.schema, Reference):
        return
    target = schemas.get(media.schema.ref.rsplit("/", 1)[-1])
    for name, prop in (getattr(target, "properties", None) or {}).items():
        if name in _ID_PREFIXES:
            for member in (prop, *(getattr(prop, "any_of", None) or ())):
                if isinstance(member, Schema) and getattr(member.type, "value", member.type) == "string":
                    member.pattern = _id_pattern(_ID_PREFIXES[name])


def _any_of(node: Any) -> None:
    """Litestar writes a Python union as ``oneOf``, which a value matching two members breaks: ``null``
    against ``Any | None`` (``oneOf: [{}, {type: null}]``), ``3`` against ``int | float``. A union
    admits a value that matches any member: ``anyOf``."""
    if isinstance(node, Schema) and node.one_of:
        node.any_of, node.one_of = node.one_of, None
    if isinstance(node, (list, tuple)):
        for item in node:
            _any_of(item)
    elif isinstance(node, dict):
        for item in node.values():
            _any_of(item)
    elif is_dataclass(node):
        for field in fields(node):
            _any_of(getattr(node, field.name))


def _complete(operation: Operation, handler: Any, method: str, path: str, settings: Settings) -> None:
    responses = operation.responses = dict(operation.responses or {})
    _success(responses, handler)
    upload = takes_file(handler)
    if upload:
        operation.request_body = _upload_body(handler, settings)
    elif operation.request_body is not None:
        operation.request_body.description = (
            f"JSON (content-type: application/json), at most {settings.max_body_bytes:,} bytes "
            "(MISTUDIO_MAX_BODY_BYTES)"
        )
    for parameter in operation.parameters or ():
        if not isinstance(parameter, Parameter):
            continue
        prefix = (
            _TEMPLATE_PREFIXES.get(path.split("/{")[0])
            if parameter.name == "template_id"
            else _ID_PREFIXES.get(parameter.name)
        )
        if parameter.param_in == "path" and prefix and isinstance(parameter.schema, Schema):
            parameter.schema.pattern = _id_pattern(prefix)
            parameter.description = parameter.description or f"A {prefix}_… id"
    for status in _statuses(operation, handler, method, upload, responses):
        responses[str(status)] = OpenAPIResponse(
            description=_MEANING.get(status, HTTPStatus(status).phrase),
            content={"application/json": OpenAPIMediaType(schema=_ERROR)},
        )
    operation.responses = dict(sorted(responses.items()))


def _statuses(operation: Operation, handler: Any, method: str, upload: bool, responses: dict[str, Any]) -> set[int]:
    """Every error status the route can answer: its own (``responses=``) and those its shape implies."""
    found = {int(code) for code in responses if int(code) >= 400}  # Litestar's 400, the route's errors()
    # The access guard answers any route: 421 for a Host that is not the device's, 401 without the token.
    # (500 INTERNAL is left out on purpose: it is a bug, not part of the contract.)
    found |= {401, 421}
    parameters = operation.parameters or ()
    if parameters or operation.request_body is not None:
        found.add(400)
    if any(isinstance(p, Parameter) and p.param_in == "path" for p in parameters):
        found.add(404)  # no such resource; a path segment that is not one also matches no route
    if method in STATE_CHANGING:
        found |= {403, 507}  # a foreign Origin; a full data disk
        if operation.request_body is not None or upload:
            found |= {413, 415}
    if "202" in responses:  # the route queues a job: one that can never fit is refused
        found.add(503)
    return found


def _success(responses: dict[str, Any], handler: Any) -> None:
    """A job-creating route answers 202 with the job; an event stream is text/event-stream."""
    success = [code for code in responses if code.startswith("2")]
    for code in success:
        content = responses[code].content or {}
        schema = content.get("application/json") and content["application/json"].schema
        if code == "201" and isinstance(schema, Reference) and schema.ref.endswith(_ACCEPTED_REFS):
            responses["202"] = responses.pop("201")
            responses["202"].description = "Accepted: the work was queued as a job; follow it at /api/jobs/{job_id}"
    if _streams_events(handler):
        ok = responses["200"]
        content = {k: v for k, v in (ok.content or {}).items() if k != "application/json"}
        json_schema = ok.content and ok.content.get("application/json") and ok.content["application/json"].schema
        alternatives_ = [s for s in getattr(json_schema, "one_of", None) or () if isinstance(s, Reference)]
        content["text/event-stream"] = OpenAPIMediaType(
            schema=Reference(
                ref=_COMPONENTS.format(name=_STREAM_EVENT),
                description="Server-Sent Events: `id:` (the event id, for Last-Event-ID), `event:` (its type) and "
                "`data:` (a JSON object, this schema) per event, and comment heartbeats. "
                "It does not end by itself.",
            )
        )
        if alternatives_:  # a JSON poll of the same events (format=json)
            content["application/json"] = OpenAPIMediaType(schema=alternatives_[0])
        ok.content = content
    for media_type in handler.opt.get("also_as", ()):
        ok = responses["200"]
        ok.content = {**(ok.content or {}), media_type: OpenAPIMediaType(schema=Schema(description=media_type))}


def _event_components(schemas: dict[str, Any]) -> None:
    """The union of every event as the component ``StreamEvent``: the schema of an event stream's
    ``data:``, so clients generated from this document (the web UI's types) get each event's shape.

    msgspec writes the events; a Struct they share with a route (the job in ``job.updated``, the
    monitoring sample) keeps the one component Litestar already wrote for it, so a client sees one
    type for it, not two."""
    (union,), components = msgspec.json.schema_components((StreamEvent,), ref_template=_COMPONENTS)
    renames: dict[str, str] = {}
    for name, struct in _structs(StreamEvent).items():
        known = _litestar_name(struct, components.get(name, {}), schemas)
        if known is not None:
            renames[_COMPONENTS.format(name=name)] = _COMPONENTS.format(name=known)
            components.pop(name)
    components[_STREAM_EVENT] = {
        **union,
        "title": _STREAM_EVENT,
        "description": "One event of /api/events: `type` names it and decides `data`.",
    }
    for name, schema in _renamed(components, renames).items():
        if name in schemas:
            raise RuntimeError(f"the event component {name} would replace a route's component of that name")
        schemas[name] = schema


def _structs(type_: Any) -> dict[str, type]:
    """Every Struct reachable from ``type_``, by the component name msgspec gives it."""
    found: dict[str, type] = {}

    def walk(info: Any) -> None:
        if isinstance(info, msgspec.inspect.StructType):
            if info.cls.__name__ in found:
                return  # seen (a Struct may refer to itself)
            found[info.cls.__name__] = info.cls
            for field in info.fields:
                walk(field.type)
        for attr in ("types", "item_type", "key_type", "value_type", "item_types"):
            value = getattr(info, attr, None)
            for item in value if isinstance(value, tuple) else (value,) if value is not None else ():
                walk(item)

    walk(msgspec.inspect.type_info(type_))
    return found


def _litestar_name(struct: type, schema: dict[str, Any], schemas: dict[str, Any]) -> str | None:
    """The name Litestar gave ``struct``'s component, if a route uses it: its own name, or one with
    as much of its module path in front as told it apart from a namesake (``device_sample_Sample``)."""
    key = (*struct.__module__.split("."), struct.__qualname__)
    for start in range(len(key)):
        found = schemas.get("_".join(key[start:]))
        if found is not None and set(getattr(found, "properties", None) or ()) == set(schema.get("properties", ())):
            return "_".join(key[start:])
    return None


def _renamed(components: dict[str, Any], renames: dict[str, str]) -> dict[str, Any]:
    def rename(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: renames.get(v, v) if k == "$ref" else rename(v) for k, v in node.items()}
        if isinstance(node, list):
            return [rename(item) for item in node]
        return node

    return rename(components)


def _streams_events(handler: Any) -> bool:
    field = handler.parsed_return_field
    return any(t.is_subclass_of(ServerSentEvent) for t in (field, *(field.inner_types or ())))


def _upload_body(handler: Any, settings: Settings) -> RequestBody:
    fields: dict[str, Any] = {}
    required = ["file"]
    if (struct := handler.opt.get("form_fields")) is not None:
        schema = msgspec.json.schema(struct)
        definition = schema["$defs"][schema["$ref"].rsplit("/", 1)[-1]]
        required += definition.get("required", [])
        for name, prop in definition.get("properties", {}).items():
            # A form field is text or absent: an optional one is left out, never sent as null.
            members = [m for m in prop.get("anyOf", [prop]) if m.get("type") != "null"]
            prop = members[0] if len(members) == 1 else {"anyOf": members}
            if name in _ID_PREFIXES and prop.get("type") == "string":
                prop = {**prop, "pattern": _id_pattern(_ID_PREFIXES[name])}
            fields[name] = prop
    return RequestBody(
        required=True,
        description=f"multipart/form-data: the file in the field `file`, at most {settings.max_upload_bytes:,} "
        "bytes (MISTUDIO_MAX_UPLOAD_BYTES); the other fields as text",
        content={
            _UPLOAD: OpenAPIMediaType(
                schema=Schema(
                    type=OpenAPIType.OBJECT,
                    required=required,
                    properties={"file": Schema(type=OpenAPIType.STRING, format=OpenAPIFormat.BINARY), **fields},
                )
            )
        },
    )
