"""What a fresh installation starts with: the demo dataset and the demo model, and the saved templates.

Each seed is created once per data dir; the fact is kept in ``app_state`` so a seed the user deleted
stays deleted.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

import aiosqlite

from appliance.api import templates
from appliance.api.state import ApiState
from appliance.contracts.params.models import ModelRegisterParams
from appliance.data import app_state, models
from appliance.demo_kit import MODEL_DIR
from appliance.errors import Conflict
from appliance.ids import new_id
from appliance.jobs.async_store import AsyncJobStore
from appliance.jobs.records import Job
from appliance.services import datasets

log = logging.getLogger("mistudio.api")

DEMO_MODEL_NAME = "mistudio-demo-gpt (demo)"


def _jobs(api: ApiState) -> AsyncJobStore:
    if api.jobs is None:
        raise RuntimeError("the job store is not open yet: seeds run in the app's lifespan, after it opens")
    return api.jobs


async def demo_model(jobs: AsyncJobStore) -> Job:
    """Register the demo model shipped in appliance/demo_kit/model (a job loads it and reads its layers).
    Checked and created in one transaction: of concurrent requests one registers it, the others get 409."""
    model_id = new_id("m")

    async def within(conn: aiosqlite.Connection, job_id: str) -> None:
        existing = list(await conn.execute_fetchall(*models.live_demo()))
        if existing:
            raise Conflict(
                f"The demo model is already registered ({existing[0]['id']})", details={"model_id": existing[0]["id"]}
            )
        await conn.execute(
            *models.insert(
                model_id,
                name=DEMO_MODEL_NAME,
                source="demo",
                precision="fp32",
                status="loading",
                path=str(MODEL_DIR),
                job_id=job_id,
                now=time.time(),
            )
        )

    params = ModelRegisterParams(model_id=model_id, path=str(MODEL_DIR), precision="fp32")
    return await jobs.create("model.register", params, target=("model", model_id), within=within)


async def create_demo_model(api: ApiState) -> Job:
    """``demo_model`` for callers holding the app state (the models controller)."""
    return await demo_model(_jobs(api))


async def _job_id(job: Awaitable[Job]) -> str:
    try:
        return (await job).id
    except Conflict as exc:  # made before this data dir kept the fact (or by a request): the seed is done
        return str(next(iter(exc.details.values())))


# Demo seeds queue jobs (MISTUDIO_SEED_DEMO=0 skips them); template seeds are rows and always made.
DEMO_SEEDS: dict[str, Callable[[ApiState], Awaitable[str]]] = {
    "seeded.demo_dataset": lambda api: _job_id(datasets.create_demo(_jobs(api))),
    "seeded.demo_model": lambda api: _job_id(demo_model(_jobs(api))),
}
SEEDS: dict[str, Callable[[ApiState], Awaitable[str]]] = {
    "seeded.extraction_templates": lambda api: templates.seed(api, templates.EXTRACTION),
    "seeded.training_templates": lambda api: templates.seed(api, templates.TRAINING),
    # After the extraction seeds: a data dir seeded by an older version gets today's seeds.
    "seeded.extraction_template_depths": templates.upgrade_extraction_seeds,
}


async def seed_first_start(api: ApiState) -> None:
    db = api.database
    if db is None:
        raise RuntimeError("the database is not open yet: seeds run in the app's lifespan, after it opens")
    seeds = {**SEEDS, **(DEMO_SEEDS if api.settings.seed_demo else {})}
    for key, create in seeds.items():
        if await db.one(app_state.exists(key)):
            continue
        made = await create(api)
        await db.write(app_state.put_once(key, made, time.time()))
        log.info("first start: %s (%s)", key.removeprefix("seeded."), made)
