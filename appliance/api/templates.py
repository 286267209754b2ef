"""Saved settings ("templates"): list, create, read, update, delete, favourite, apply, export, import.

One generic controller per kind (appliance.services.templates holds the kinds and the rules).
Extraction and training templates and steering presets (appliance.api.steering_presets) are kinds.
"""

from __future__ import annotations

import time

from litestar import Controller, Response, delete, get, post, put
from litestar.params import Parameter

from appliance.api import envelope
from appliance.api.envelope import Envelope, ok
from appliance.api.state import ApiState
from appliance.data.database import AsyncDatabase
from appliance.services import templates as service
from appliance.services.extraction_templates import EXTRACTION, upgrade_seeds
from appliance.services.templates import (
    TRAINING,
    Applied,
    ApplyRequest,
    Kind,
    Template,
    TemplateIn,
    TemplatePatch,
)

__all__ = [
    "EXTRACTION",
    "TRAINING",
    "ExtractionTemplatesController",
    "TrainingTemplatesController",
    "controller_for",
    "seed",
    "upgrade_extraction_seeds",
]


async def seed(api: ApiState, kind: Kind) -> str:
    """The kind's seeds, for the first start (appliance.api.seeds holds the ApiState)."""
    if api.database is None:
        raise RuntimeError("the database is not open yet: seeds run in the app's lifespan, after it opens")
    return await service.seed(api.database, kind)


async def upgrade_extraction_seeds(api: ApiState) -> str:
    """The extraction seeds of an older version (absolute layers of a 12-layer model) made model-free."""
    if api.database is None:
        raise RuntimeError("the database is not open yet: seeds run in the app's lifespan, after it opens")
    return await upgrade_seeds(api.database, time.time())


def controller_for(kind: Kind) -> type[Controller]:
    class TemplatesController(Controller):
        path = kind.path or f"/api/templates/{kind.name}"
        tags = ["templates"]

        @get("/", summary=f"{kind.name.capitalize()} templates: favourites first, then newest")
        async def list_templates(
            self,
            db: AsyncDatabase,
            is_favorite: bool | None = None,
            model_id: str | None = Parameter(default=None, max_length=100),
            dataset_id: str | None = Parameter(default=None, max_length=100),
            training_id: str | None = Parameter(default=None, max_length=100),
            page: int = Parameter(default=1, ge=1, le=100_000),
            limit: int = Parameter(default=50, ge=1, le=200),
        ) -> Envelope[list[Template]]:
            bindings = {"model_id": model_id, "dataset_id": dataset_id, "training_id": training_id}
            found, total = await service.list_page(db, kind, is_favorite, bindings, page, limit)
            return envelope.page(found, page, limit, total)

        @post("/", summary="Save settings as a template")
        async def create(self, db: AsyncDatabase, data: TemplateIn) -> Response[Envelope[Template]]:
            return Response(ok(await service.insert(db, kind, data)), status_code=201)

        @get("/export", summary="All templates of this kind as JSON (for import elsewhere)")
        async def export(self, db: AsyncDatabase) -> Envelope[list[Template]]:
            return ok(await service.export(db, kind))

        @post("/import", summary="Import templates (an export's data list); each gets a new id")
        async def import_(self, db: AsyncDatabase, data: list[TemplateIn]) -> Response[Envelope[list[Template]]]:
            return Response(ok(await service.insert_all(db, kind, data)), status_code=201)

        @get("/{template_id:str}", summary="One template")
        async def get_template(self, db: AsyncDatabase, template_id: str) -> Envelope[Template]:
            return ok(await service.get(db, kind, template_id))

        @put("/{template_id:str}", summary="Change a template (name, description, favourite, settings)")
        async def update(self, db: AsyncDatabase, template_id: str, data: TemplatePatch) -> Envelope[Template]:
            return ok(await service.update(db, kind, template_id, data))

        @post("/{template_id:str}/favorite", status_code=200, summary="Toggle the favourite star")
        async def favorite(self, db: AsyncDatabase, template_id: str) -> Envelope[Template]:
            return ok(await service.toggle_favorite(db, kind, template_id))

        @post("/{template_id:str}/apply", status_code=200, summary="The settings to use, fitted to a model")
        async def apply(self, db: AsyncDatabase, template_id: str, data: ApplyRequest) -> Envelope[Applied]:
            return ok(await service.apply(db, kind, template_id, data))

        @delete("/{template_id:str}", status_code=200, summary="Delete a template")
        async def delete_template(self, db: AsyncDatabase, template_id: str) -> Envelope[Template]:
            return ok(await service.delete(db, kind, template_id))

    TemplatesController.__name__ = f"{kind.name.capitalize()}TemplatesController"
    return TemplatesController


ExtractionTemplatesController = controller_for(EXTRACTION)
TrainingTemplatesController = controller_for(TRAINING)
