"""The success envelope: ``{"data": ..., "meta": {...}}`` with pagination for lists."""

from __future__ import annotations

import secrets

import msgspec

from appliance.timefmt import now_iso


class Pagination(msgspec.Struct):
    page: int
    limit: int
    total: int
    has_next: bool
    has_prev: bool


class Meta(msgspec.Struct, omit_defaults=True):
    timestamp: str
    request_id: str
    pagination: Pagination | None = None


def request_id() -> str:
    return "req_" + secrets.token_hex(6)


def meta(pagination: Pagination | None = None) -> Meta:
    return Meta(timestamp=now_iso(), request_id=request_id(), pagination=pagination)


def page_meta(page: int, limit: int, total: int) -> Meta:
    return meta(Pagination(page=page, limit=limit, total=total, has_next=page * limit < total, has_prev=page > 1))


class Accepted(msgspec.Struct):
    job_id: str
    status: str
    kind: str
