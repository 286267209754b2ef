"""The success envelope: ``{"data": ..., "meta": {...}}`` with pagination for lists."""

from __future__ import annotations

import itertools
import secrets
from typing import Generic, TypeVar

import msgspec

from appliance.timefmt import now_iso


class Pagination(msgspec.Struct, omit_defaults=True):
    page: int
    limit: int
    total: int
    has_next: bool
    has_prev: bool
    # False when counting stopped at a cap: there are at least `total` items ("1,000+").
    total_exact: bool = True


class Meta(msgspec.Struct, omit_defaults=True):
    timestamp: str
    request_id: str
    pagination: Pagination | None = None


_REQUEST_PREFIX = "req_" + secrets.token_hex(3)
_request_counter = itertools.count(1)


def request_id() -> str:
    # Unique per process run and nearly free (a random prefix and a counter); drawing random bytes for
    # every answer showed up in the latency profile.
    return f"{_REQUEST_PREFIX}{next(_request_counter):x}"


def meta(pagination: Pagination | None = None) -> Meta:
    return Meta(timestamp=now_iso(), request_id=request_id(), pagination=pagination)


def page_meta(page: int, limit: int, total: int, *, exact: bool = True, has_next: bool | None = None) -> Meta:
    return meta(
        Pagination(
            page=page,
            limit=limit,
            total=total,
            has_next=page * limit < total if has_next is None else has_next,
            has_prev=page > 1,
            total_exact=exact,
        )
    )


class Accepted(msgspec.Struct):
    job_id: str
    status: str
    kind: str


T = TypeVar("T")


class Envelope(msgspec.Struct, Generic[T]):
    """Every success answer: ``Envelope[Training]``, ``Envelope[list[Dataset]]``... The type parameter
    keeps each answer's schema in the OpenAPI document (and so in the UI's generated types)."""

    data: T
    meta: Meta


def ok(data: T, pagination: Pagination | None = None) -> Envelope[T]:
    return Envelope(data, meta(pagination))


def page(
    data: T, page: int, limit: int, total: int, *, exact: bool = True, has_next: bool | None = None
) -> Envelope[T]:
    return Envelope(data, page_meta(page, limit, total, exact=exact, has_next=has_next))
