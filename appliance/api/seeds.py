"""What a fresh installation starts with: the demo dataset (and, as later resources land, their seeds).

Each seed is created once per data dir; the fact is kept in ``app_state`` so a seed the user deleted
stays deleted.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

import aiosqlite

from appliance.api import templates
from appliance.api.queueing import with_row
from appliance.api.state import ApiState
from appliance.data.jobs import Query
from appliance.demo_kit import MODEL_DIR
from appliance.errors import Conflict
from appliance.ids import new_id
from appliance.jobs.async_store import Within
from appliance.jobs.records import Job

log = logging.getLogger("mistudio.api")

DEMO_DATASET_NAME = "Python stdlib docs (demo)"
DEMO_MODEL_NAME = "mistudio-demo-gpt (demo)"


def _only_one(table: str, row_id: str, insert: Query, conflict: str, id_key: str) -> Within:
    """Create a demo resource unless one (not failed) exists: checked in the transaction that creates
    it, so concurrent requests cannot both pass the check. The others get 409 naming the one there is."""
    async def within(db: aiosqlite.Connection, job_id: str) -> None:
        existing = list(await db.execute_fetchall(f"SELECT id FROM {table} WHERE source = 'demo' AND status != 'error'"))
        if existing:
            raise Conflict(conflict.format(existing[0]["id"]), details={id_key: existing[0]["id"]})
        await with_row(table, row_id, insert)(db, job_id)
    return within


async def create_demo_dataset(api: ApiState) -> Job:
    """Queue the job that builds the demo dataset from this device's Python standard library (409 while
    one exists)."""
    assert api.db is not None and api.jobs is not None
    dataset_id, now = new_id("ds"), time.time()
    insert = ("INSERT INTO datasets (id, name, source, format, text_column, status, created_at, updated_at)"
              " VALUES (?, ?, 'demo', 'python-docstrings', 'text', 'ingesting', ?, ?)",
              (dataset_id, DEMO_DATASET_NAME, now, now))
    return await api.jobs.create("dataset.demo", {"dataset_id": dataset_id}, target=("dataset", dataset_id),
                                 within=_only_one("datasets", dataset_id, insert, "The demo dataset already exists "
                                                  "({}); delete it first to rebuild it", "dataset_id"))


async def create_demo_model(api: ApiState) -> Job:
    """Register the demo model shipped in appliance/demo_kit/model (a job loads it and reads its layers; 409
    while one is registered)."""
    assert api.db is not None and api.jobs is not None
    model_id, now = new_id("m"), time.time()
    insert = ("INSERT INTO models (id, name, source, precision, status, path, created_at, updated_at)"
              " VALUES (?, ?, 'demo', 'fp32', 'loading', ?, ?, ?)", (model_id, DEMO_MODEL_NAME, str(MODEL_DIR), now, now))
    return await api.jobs.create("model.register", {"model_id": model_id, "path": str(MODEL_DIR), "precision": "fp32"},
                                 target=("model", model_id),
                                 within=_only_one("models", model_id, insert,
                                                  "The demo model is already registered ({})", "model_id"))


async def _job_id(job: Awaitable[Job]) -> str:
    try:
        return (await job).id
    except Conflict as exc:  # made before this data dir kept the fact (or by a request): the seed is done
        return next(iter(exc.details.values()))


# Demo seeds queue jobs (MISTUDIO_SEED_DEMO=0 skips them); template seeds are rows and always made.
DEMO_SEEDS: dict[str, Callable[[ApiState], Awaitable[str]]] = {
    "seeded.demo_dataset": lambda api: _job_id(create_demo_dataset(api)),
    "seeded.demo_model": lambda api: _job_id(create_demo_model(api)),
}
SEEDS: dict[str, Callable[[ApiState], Awaitable[str]]] = {
    "seeded.extraction_templates": lambda api: templates.seed(api, templates.EXTRACTION),
    "seeded.training_templates": lambda api: templates.seed(api, templates.TRAINING),
}


async def seed_first_start(api: ApiState) -> None:
    assert api.db is not None
    seeds = {**SEEDS, **(DEMO_SEEDS if api.settings.seed_demo else {})}
    for key, create in seeds.items():
        if await api.db.execute_fetchall("SELECT 1 FROM app_state WHERE key = ?", (key,)):
            continue
        made = await create(api)
        async with api.db_lock:
            await api.db.execute("INSERT OR IGNORE INTO app_state (key, value, updated_at) VALUES (?, ?, ?)",
                                 (key, made, time.time()))
        log.info("first start: %s (%s)", key.removeprefix("seeded."), made)
