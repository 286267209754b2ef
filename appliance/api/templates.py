"""Saved settings ("templates"): list, create, read, update, delete, favourite, apply, export, import.

One generic controller per kind; a kind supplies the msgspec Struct of its settings, its id prefix,
its seeds and how "apply" fits the settings to a target. Extraction and training templates and
steering presets (appliance/api/steering_presets.py) are kinds.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import msgspec
from litestar import Controller, Request, Response, delete, get, post, put
from litestar.params import Parameter

from appliance.api.envelope import Meta, meta, page_meta
from appliance.api.state import ApiState, api_state
from appliance.api.validation import check_id
from appliance.contracts.hyperparameters import Hyperparameters
from appliance.errors import NotFound, ValidationError
from appliance.ids import new_id

Name = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
Description = Annotated[str, msgspec.Meta(max_length=2000)]


class ExtractionSettings(msgspec.Struct, forbid_unknown_fields=True):
    layers: Annotated[list[Annotated[int, msgspec.Meta(ge=0, le=1000)]], msgspec.Meta(min_length=1, max_length=200)]
    hook_types: Annotated[list[Literal["residual", "mlp_in", "mlp", "attention"]], msgspec.Meta(min_length=1, max_length=4)]
    max_samples: Annotated[int, msgspec.Meta(ge=1)] | None = None
    top_k_examples: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 50
    batch_size: Annotated[int, msgspec.Meta(ge=1, le=512)] = 32
    context_length: Annotated[int, msgspec.Meta(ge=2, le=32768)] = 128


class TrainingSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    encoder_type: Literal["sparse", "topk", "jumprelu", "skip", "transcoder"] = "sparse"
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


class TemplateResponse(msgspec.Struct):
    data: Template
    meta: Meta


class TemplateListResponse(msgspec.Struct):
    data: list[Template]
    meta: Meta


class AppliedResponse(msgspec.Struct):
    data: Applied
    meta: Meta


Fit = Callable[[ApiState, dict[str, Any], ApplyRequest], Awaitable[tuple[dict[str, Any], list[str]]]]


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
    before_list: Callable[[ApiState, dict[str, str]], Awaitable[None]] | None = None




def _checked(kind: Kind, config: dict[str, Any]) -> dict[str, Any]:
    try:
        return msgspec.to_builtins(msgspec.convert(config, kind.settings))
    except msgspec.ValidationError as exc:
        raise ValidationError(f"Invalid {kind.name} settings: {exc}", details={"field": "config"}) from None


def _template(row: Any) -> Template:
    return Template(row["id"], row["kind"], row["name"], row["description"], bool(row["is_favorite"]),
                    msgspec.json.decode(row["config"]), row["created_at"], row["updated_at"])


async def insert(api: ApiState, kind: Kind, item: TemplateIn) -> Template:
    assert api.db is not None
    template_id, now = new_id(kind.prefix), time.time()
    config = _checked(kind, item.config)
    async with api.db_lock:
        await api.db.execute(
            "INSERT INTO templates (id, kind, name, description, is_favorite, config, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)", (template_id, kind.name, item.name, item.description,
                                                 int(item.is_favorite), msgspec.json.encode(config).decode(), now, now))
    return Template(template_id, kind.name, item.name, item.description, item.is_favorite, config, now, now)


async def seed(api: ApiState, kind: Kind) -> str:
    ids = [(await insert(api, kind, TemplateIn(name, config, description, favorite))).id
           for name, description, favorite, config in kind.seeds]
    return ",".join(ids)


async def _fit_extraction(api: ApiState, config: dict[str, Any], request: ApplyRequest) -> tuple[dict[str, Any], list[str]]:
    """Layers the model does not have are dropped (a 12-layer template on a 4-layer model)."""
    model_id = request.model_id
    if not model_id:
        return config, []
    assert api.db is not None
    rows = await api.db.execute_fetchall("SELECT architecture FROM models WHERE id = ?",
                                         (check_id(model_id, "m", "model_id"),))
    if not rows:
        raise NotFound(f"No model {model_id!r}", details={"model_id": model_id})
    if not rows[0]["architecture"]:
        return config, ["The model is not loaded yet: layers were not checked"]
    layers = msgspec.json.decode(rows[0]["architecture"])["layers"]
    kept = [layer for layer in config["layers"] if layer < layers]
    notes = [f"Dropped layers {', '.join(map(str, sorted(set(config['layers']) - set(kept))))}: the model has "
             f"layers 0-{layers - 1}"] if len(kept) < len(config["layers"]) else []
    if not kept:
        kept = [layers - 1]
        notes.append(f"No layer of the template exists in this model; using its last layer ({layers - 1})")
    return {**config, "layers": kept}, notes


async def _fit_training(api: ApiState, config: dict[str, Any], request: ApplyRequest) -> tuple[dict[str, Any], list[str]]:
    """The template's settings with the model and dataset the caller chose (or its own binding)."""
    assert api.db is not None
    fitted = dict(config)
    for field_name, table, prefix in (("model_id", "models", "m"), ("dataset_id", "datasets", "ds")):
        value = getattr(request, field_name)
        if value:
            if not await api.db.execute_fetchall(f"SELECT 1 FROM {table} WHERE id = ?",
                                                 (check_id(value, prefix, field_name),)):
                raise NotFound(f"No {table[:-1]} {value!r}", details={field_name: value})
            fitted[field_name] = value
    return fitted, []


EXTRACTION = Kind("extraction", "et", ExtractionSettings, (
    ("Quick Scan", "Extract from key layers only", True,
     {"layers": [0, 6, 11], "hook_types": ["residual"], "max_samples": 5000, "top_k_examples": 50}),
    ("Full Analysis", "Comprehensive extraction from all layers", False,
     {"layers": list(range(12)), "hook_types": ["residual", "mlp", "attention"], "max_samples": None,
      "top_k_examples": 100}),
), _fit_extraction)

# The mock's three seeds, with its names, learning rates, batch sizes, expansion factors, steps and
# schedules. Its L1 values (5e-4..2e-3) assume raw activations; here activations are normalised
# (SAELens' convention), where comparable sparsity takes coefficients of a few units. The mock's
# schedules, AdamW and ghost-grad switches are kept; its model/dataset binding (mock ids) is not.
TRAINING = Kind("training", "tt", TrainingSettings, (
    ("Fast Prototyping", "Quick training with small expansion factor for rapid iteration", True,
     {"encoder_type": "sparse", "hyperparameters": {"learning_rate": 5e-4, "batch_size": 128, "l1_coefficient": 3.0,
                                                     "expansion_factor": 4, "total_steps": 5000, "lr_decay": "constant",
                                                     "optimizer": "adamw", "ghost_grads": False}}),
    ("High Quality SAE", "Production-quality sparse autoencoder with cosine schedule", True,
     {"encoder_type": "sparse", "hyperparameters": {"learning_rate": 1e-4, "batch_size": 256, "l1_coefficient": 5.0,
                                                     "expansion_factor": 8, "total_steps": 10000, "lr_decay": "cosine",
                                                     "optimizer": "adamw", "ghost_grads": True}}),
    ("Large Expansion", "Very sparse with 16x expansion for detailed feature discovery", False,
     {"encoder_type": "sparse", "hyperparameters": {"learning_rate": 1e-4, "batch_size": 512, "l1_coefficient": 8.0,
                                                     "expansion_factor": 16, "total_steps": 20000, "lr_decay": "linear",
                                                     "optimizer": "adamw", "ghost_grads": True}}),
), _fit_training, bindings=("model_id", "dataset_id"))


def controller_for(kind: Kind) -> type[Controller]:
    class TemplatesController(Controller):
        path = kind.path or f"/api/templates/{kind.name}"
        tags = ["templates"]

        async def _row(self, request: Request, template_id: str) -> Any:
            db = api_state(request).db
            assert db is not None
            rows = await db.execute_fetchall("SELECT * FROM templates WHERE id = ? AND kind = ?",
                                             (check_id(template_id, kind.prefix, "template_id"), kind.name))
            if not rows:
                raise NotFound(f"No {kind.name} template {template_id!r}", details={"template_id": template_id})
            return rows[0]

        @get("/", summary=f"{kind.name.capitalize()} templates: favourites first, then newest")
        async def list_templates(self, request: Request, is_favorite: bool | None = None,
                                 model_id: str | None = Parameter(default=None, max_length=100),
                                 dataset_id: str | None = Parameter(default=None, max_length=100),
                                 training_id: str | None = Parameter(default=None, max_length=100),
                                 page: int = Parameter(default=1, ge=1, le=100_000),
                                 limit: int = Parameter(default=50, ge=1, le=200)) -> TemplateListResponse:
            db = api_state(request).db
            assert db is not None
            where, params = "kind = ?", [kind.name]
            if is_favorite is not None:
                where += " AND is_favorite = ?"
                params.append(int(is_favorite))
            # Bound to this model (or dataset, training), or generic.
            bound = {name: value for name, value in (("model_id", model_id), ("dataset_id", dataset_id),
                                                     ("training_id", training_id))
                     if value and name in kind.bindings}
            if bound and kind.before_list:
                await kind.before_list(api_state(request), bound)
            for field_name, value in bound.items():
                where += f" AND coalesce(json_extract(config, '$.{field_name}'), ?) = ?"
                params += [value, value]
            total = (await db.execute_fetchall(f"SELECT count(*) FROM templates WHERE {where}", params))[0][0]
            rows = await db.execute_fetchall(
                f"SELECT * FROM templates WHERE {where} ORDER BY is_favorite DESC, created_at DESC LIMIT ? OFFSET ?",
                (*params, limit, (page - 1) * limit))
            return TemplateListResponse([_template(r) for r in rows], page_meta(page, limit, total))

        @post("/", summary="Save settings as a template")
        async def create(self, request: Request, data: TemplateIn) -> Response[TemplateResponse]:
            return Response(TemplateResponse(await insert(api_state(request), kind, data), meta()), status_code=201)

        @get("/export", summary="All templates of this kind as JSON (for import elsewhere)")
        async def export(self, request: Request) -> TemplateListResponse:
            db = api_state(request).db
            assert db is not None
            rows = await db.execute_fetchall("SELECT * FROM templates WHERE kind = ? ORDER BY created_at", (kind.name,))
            return TemplateListResponse([_template(r) for r in rows], meta())

        @post("/import", summary="Import templates (an export's data list); each gets a new id")
        async def import_(self, request: Request, data: list[TemplateIn]) -> Response[TemplateListResponse]:
            api = api_state(request)
            for item in data:  # all or nothing: validate every one first
                _checked(kind, item.config)
            created = [await insert(api, kind, item) for item in data]
            return Response(TemplateListResponse(created, meta()), status_code=201)

        @get("/{template_id:str}", summary="One template")
        async def get_template(self, request: Request, template_id: str) -> TemplateResponse:
            return TemplateResponse(_template(await self._row(request, template_id)), meta())

        @put("/{template_id:str}", summary="Change a template (name, description, favourite, settings)")
        async def update(self, request: Request, template_id: str, data: TemplatePatch) -> TemplateResponse:
            row = await self._row(request, template_id)
            api = api_state(request)
            assert api.db is not None
            current = _template(row)
            config = _checked(kind, data.config) if data.config is not None else current.config
            updated = Template(current.id, kind.name, data.name or current.name,
                               current.description if data.description is None else data.description,
                               current.is_favorite if data.is_favorite is None else data.is_favorite,
                               config, current.created_at, time.time())
            async with api.db_lock:
                await api.db.execute(
                    "UPDATE templates SET name = ?, description = ?, is_favorite = ?, config = ?, updated_at = ?"
                    " WHERE id = ?", (updated.name, updated.description, int(updated.is_favorite),
                                      msgspec.json.encode(config).decode(), updated.updated_at, updated.id))
            return TemplateResponse(updated, meta())

        @post("/{template_id:str}/favorite", status_code=200, summary="Toggle the favourite star")
        async def favorite(self, request: Request, template_id: str) -> TemplateResponse:
            row = await self._row(request, template_id)
            return await self.update.fn(self, request, template_id, TemplatePatch(is_favorite=not row["is_favorite"]))

        @post("/{template_id:str}/apply", status_code=200, summary="The settings to use, fitted to a model")
        async def apply(self, request: Request, template_id: str, data: ApplyRequest) -> AppliedResponse:
            current = _template(await self._row(request, template_id))
            config, notes = await kind.fit(api_state(request), current.config, data)
            return AppliedResponse(Applied(current.id, config, notes), meta())

        @delete("/{template_id:str}", status_code=200, summary="Delete a template")
        async def delete_template(self, request: Request, template_id: str) -> TemplateResponse:
            row = await self._row(request, template_id)
            api = api_state(request)
            assert api.db is not None
            async with api.db_lock:
                await api.db.execute("DELETE FROM templates WHERE id = ?", (row["id"],))
            return TemplateResponse(_template(row), meta())

    TemplatesController.__name__ = f"{kind.name.capitalize()}TemplatesController"
    return TemplatesController


ExtractionTemplatesController = controller_for(EXTRACTION)
TrainingTemplatesController = controller_for(TRAINING)
