"""SQL for ``templates`` (saved settings of every kind: extraction, training, steering presets).
Each function returns a ``Query``; the config column holds the kind's settings as JSON."""

from __future__ import annotations

from typing import Any

from appliance.data.database import Query
from appliance.data.statements import delete_by


def insert(
    template_id: str, kind: str, name: str, description: str, is_favorite: bool, config: str, now: float
) -> Query:
    return (
        "INSERT INTO templates (id, kind, name, description, is_favorite, config, created_at, updated_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (template_id, kind, name, description, int(is_favorite), config, now, now),
    )


def get(template_id: str, kind: str) -> Query:
    return "SELECT * FROM templates WHERE id = ? AND kind = ?", (template_id, kind)


def list_page(kind: str, is_favorite: bool | None, bound: dict[str, str], page: int, limit: int) -> tuple[Query, Query]:
    """The page (favourites first, then newest) and the total count, with the same filter. A
    template bound to a resource (its config names e.g. model_id) matches that resource; one that
    names none is generic and matches every resource. ``bound``'s keys come from code."""
    where = "kind = ?"
    params: list[Any] = [kind]
    if is_favorite is not None:
        where += " AND is_favorite = ?"
        params.append(int(is_favorite))
    for field_name, value in bound.items():
        where += f" AND coalesce(json_extract(config, '$.{field_name}'), ?) = ?"
        params += [value, value]
    rows = (
        f"SELECT * FROM templates WHERE {where} ORDER BY is_favorite DESC, created_at DESC LIMIT ? OFFSET ?",
        (*params, limit, (page - 1) * limit),
    )
    return rows, (f"SELECT count(*) FROM templates WHERE {where}", tuple(params))


def list_kind(kind: str) -> Query:
    return "SELECT * FROM templates WHERE kind = ? ORDER BY created_at", (kind,)


def update(template_id: str, name: str, description: str, is_favorite: bool, config: str, now: float) -> Query:
    return (
        "UPDATE templates SET name = ?, description = ?, is_favorite = ?, config = ?, updated_at = ? WHERE id = ?",
        (name, description, int(is_favorite), config, now, template_id),
    )


def delete(template_id: str) -> Query:
    return delete_by("templates", template_id)


def delete_steering_presets_of(training_id: str) -> Query:
    """A training's steering presets: they name its features, so they go when it goes."""
    return (
        "DELETE FROM templates WHERE kind = 'steering' AND json_extract(config, '$.training_id') = ?",
        (training_id,),
    )
