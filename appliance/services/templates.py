"""Saved settings ("templates") of every kind: create, read, list, change, delete, seed, and "apply"
(the settings fitted to a target). A kind supplies the msgspec Struct of its settings, its id prefix,
its seeds and how "apply" fits the settings; training templates are defined here, extraction
templates in appliance.services.extraction_templates, steering presets in appliance.services.steering_presets.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any

import msgspec

from appliance.api.validation import check_id
from appliance.contracts.hyperparameters import EncoderType, Hyperparameters
from appliance.data import datasets, models
from appliance.data import templates as sql
from appliance.data.database import AsyncDatabase, Row
from appliance.errors import NotFound, ValidationError
from appliance.ids import new_id

Name = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
Description = Annotated[str, msgspec.Meta(max_length=2000)]


class TrainingSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    encoder_type: EncoderType = "sparse"
    hyperparameters: Hyperparameters = msgspec.field(default_factory=Hyperparameters)
    model_id: str | None = None  # optional binding; apply may override it
    dataset_id: str | None = None


class Template(msgspec.Struct):
    id: str
    kind: str
    name: str
    description: str
    is_favorite: bool
    config: dict[str, Any]
    created_at: float
    updated_at: float
    # What the API allows on it now (templates are plain rows: every action, always).
    actions: list[str] = msgspec.field(default_factory=list)


class TemplateIn(msgspec.Struct, forbid_unknown_fields=True):
    name: Name
    config: dict[str, Any]
    description: Description = ""
    is_favorite: bool = False


class TemplatePatch(msgspec.Struct, forbid_unknown_fields=True):
    name: Name | None = None
    description: Description | None = None
    is_favorite: bool | None = None
    config: dict[str, Any] | None = None


class ApplyRequest(msgspec.Struct, forbid_unknown_fields=True):
    model_id: str | None = None
    dataset_id: str | None = None
    training_id: str | None = None


class Applied(msgspec.Struct):
    template_id: str
    config: dict[str, Any]
    notes: list[str]


Fit = Callable[[AsyncDatabase, dict[str, Any], ApplyRequest], Awaitable[tuple[dict[str, Any], list[str]]]]


@dataclass(frozen=True)
class Kind:
    name: str
    prefix: str
    settings: type[msgspec.Struct]
    seeds: tuple[tuple[str, str, bool, dict[str, Any]], ...]
    fit: Fit
    # Config fields that bind a template to a resource; lists filter by them (bound or generic).
    bindings: tuple[str, ...] = ()
    path: str = ""  # default /api/templates/<name>
    # Called before a list that names bindings (lazy seeds that depend on the resource).
    before_list: Callable[[AsyncDatabase, dict[str, str]], Awaitable[None]] | None = None


TEMPLATE_ACTIONS = ["update", "favorite", "apply", "delete"]


def template_actions() -> list[str]:
    """A template has no state of its own: every endpoint on it is always allowed."""
    return list(TEMPLATE_ACTIONS)


def checked(kind: Kind, config: dict[str, Any]) -> dict[str, Any]:
    """The config as the kind's settings Struct accepts it (defaults filled in), or VALIDATION_ERROR."""
    try:
        return msgspec.to_builtins(msgspec.convert(config, kind.settings))
    except msgspec.ValidationError as exc:
        raise ValidationError(f"Invalid {kind.name} settings: {exc}", details={"field": "config"}) from None


def template(row: Row) -> Template:
    return Template(
        row["id"],
        row["kind"],
        row["name"],
        row["description"],
        bool(row["is_favorite"]),
        msgspec.json.decode(row["config"]),
        row["created_at"],
        row["updated_at"],
        template_actions(),
    )


def _encode(config: dict[str, Any]) -> str:
    return msgspec.json.encode(config).decode()


async def insert(db: AsyncDatabase, kind: Kind, item: TemplateIn) -> Template:
    template_id, now = new_id(kind.prefix), time.time()
    config = checked(kind, item.config)
    await db.write(
        sql.insert(template_id, kind.name, item.name, item.description, item.is_favorite, _encode(config), now)
    )
    return Template(
        template_id, kind.name, item.name, item.description, item.is_favorite, config, now, now, template_actions()
    )


async def insert_all(db: AsyncDatabase, kind: Kind, items: list[TemplateIn]) -> list[Template]:
    """An import: every item is checked before any is stored, so a bad one stores nothing."""
    for item in items:
        checked(kind, item.config)
    return [await insert(db, kind, item) for item in items]


async def seed(db: AsyncDatabase, kind: Kind) -> str:
    """The kind's seeds as new templates; their ids, comma-separated (kept in app_state)."""
    ids = [
        (await insert(db, kind, TemplateIn(name, config, description, favorite))).id
        for name, description, favorite, config in kind.seeds
    ]
    return ",".join(ids)


async def get(db: AsyncDatabase, kind: Kind, template_id: str) -> Template:
    row = await db.one(sql.get(check_id(template_id, kind.prefix, "template_id"), kind.name))
    if row is None:
        raise NotFound(f"No {kind.name} template {template_id!r}", details={"template_id": template_id})
    return template(row)


async def list_page(
    db: AsyncDatabase, kind: Kind, is_favorite: bool | None, bindings: dict[str, str | None], page: int, limit: int
) -> tuple[list[Template], int]:
    """Favourites first, then newest; with bindings named, those bound to them or to nothing."""
    bound = {name: value for name, value in bindings.items() if value and name in kind.bindings}
    if bound and kind.before_list:
        await kind.before_list(db, bound)
    rows_q, count_q = sql.list_page(kind.name, is_favorite, bound, page, limit)
    total = await db.scalar(count_q)
    return [template(row) for row in await db.all(rows_q)], total


async def export(db: AsyncDatabase, kind: Kind) -> list[Template]:
    return [template(row) for row in await db.all(sql.list_kind(kind.name))]


async def update(db: AsyncDatabase, kind: Kind, template_id: str, patch: TemplatePatch) -> Template:
    current = await get(db, kind, template_id)
    config = checked(kind, patch.config) if patch.config is not None else current.config
    updated = Template(
        current.id,
        kind.name,
        patch.name or current.name,
        current.description if patch.description is None else patch.description,
        current.is_favorite if patch.is_favorite is None else patch.is_favorite,
        config,
        current.created_at,
        time.time(),
        template_actions(),
    )
    await db.write(
        sql.update(
            updated.id, updated.name, updated.description, updated.is_favorite, _encode(config), updated.updated_at
        )
    )
    return updated


async def toggle_favorite(db: AsyncDatabase, kind: Kind, template_id: str) -> Template:
    current = await get(db, kind, template_id)
    return await update(db, kind, template_id, TemplatePatch(is_favorite=not current.is_favorite))


async def apply(db: AsyncDatabase, kind: Kind, template_id: str, request: ApplyRequest) -> Applied:
    current = await get(db, kind, template_id)
    config, notes = await kind.fit(db, current.config, request)
    return Applied(current.id, config, notes)


async def delete(db: AsyncDatabase, kind: Kind, template_id: str) -> Template:
    current = await get(db, kind, template_id)
    await db.write(sql.delete(current.id))
    return current


# -- the kinds defined here ---------------------------------------------------------------------------
async def _fit_training(
    db: AsyncDatabase, config: dict[str, Any], request: ApplyRequest
) -> tuple[dict[str, Any], list[str]]:
    """The template's settings with the model and dataset the caller chose (or its own binding)."""
    fitted = dict(config)
    for field_name, what, prefix, query in (
        ("model_id", "model", "m", models.get),
        ("dataset_id", "dataset", "ds", datasets.get),
    ):
        value = getattr(request, field_name)
        if value:
            if await db.one(query(check_id(value, prefix, field_name))) is None:
                raise NotFound(f"No {what} {value!r}", details={field_name: value})
            fitted[field_name] = value
    return fitted, []


# Three starting points, from quick to thorough: batch sizes, expansion factors, steps and schedules
# as commonly used. They name no learning rate and no L1 coefficient: a training started from one gets
# its architecture's (ARCHITECTURE_DEFAULTS, measured by `mistudio bench quality`), so they cannot
# disagree with the defaults, and the same numbers follow a change of architecture in the form.
TRAINING = Kind(
    "training",
    "tt",
    TrainingSettings,
    (
        (
            "Fast Prototyping",
            "Quick training with small expansion factor for rapid iteration",
            True,
            {
                "encoder_type": "sparse",
                "hyperparameters": {
                    "batch_size": 128,
                    "expansion_factor": 4,
                    "total_steps": 5000,
                    "lr_decay": "constant",
                    "optimizer": "adamw",
                    "ghost_grads": False,
                },
            },
        ),
        (
            "High Quality SAE",
            "Production-quality sparse autoencoder with cosine schedule",
            True,
            {
                "encoder_type": "sparse",
                "hyperparameters": {
                    "batch_size": 256,
                    "expansion_factor": 8,
                    "total_steps": 10000,
                    "lr_decay": "cosine",
                    "optimizer": "adamw",
                    "ghost_grads": True,
                },
            },
        ),
        (
            "Large Expansion",
            "16x expansion for detailed feature discovery",
            False,
            {
                "encoder_type": "sparse",
                "hyperparameters": {
                    "batch_size": 512,
                    "expansion_factor": 16,
                    "total_steps": 20000,
                    "lr_decay": "linear",
                    "optimizer": "adamw",
                    "ghost_grads": True,
                },
            },
        ),
        (
            "Matryoshka BatchTopK",
            "Nested dictionaries: each prefix group reconstructs on its own, so features do not split as it grows",
            True,
            {
                "encoder_type": "matryoshka_batchtopk",
                "hyperparameters": {
                    "batch_size": 1024,
                    "expansion_factor": 16,
                    "k": 32,
                    "total_steps": 10000,
                    "lr_decay": "cosine",
                    "optimizer": "adam",
                },
            },
        ),
        (
            "Sparse at a target L0",
            "Say how many latents should fire per token: the L1 coefficient adapts during training to reach it",
            False,
            {
                "encoder_type": "sparse",
                "hyperparameters": {
                    "batch_size": 256,
                    "expansion_factor": 8,
                    "total_steps": 10000,
                    "lr_decay": "cosine",
                    "optimizer": "adamw",
                    "target_l0": 32,
                },
            },
        ),
    ),
    _fit_training,
    bindings=("model_id", "dataset_id"),
)
