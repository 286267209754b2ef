"""What a fresh installation starts with: the demo dataset (and, as later resources land, their seeds).

Each seed is created once per data dir; the fact is kept in ``app_state`` so a seed the user deleted
stays deleted.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

from appliance.api import templates
from appliance.api.state import ApiState
from appliance.demo import MODEL_DIR
from appliance.ids import new_id
from appliance.jobs.model import Job

log = logging.getLogger("mistudio.api")

DEMO_DATASET_NAME = "Python stdlib docs (demo)"
DEMO_MODEL_NAME = "mistudio-demo-gpt (demo)"


async def create_demo_dataset(api: ApiState) -> Job:
    """Queue the job that builds the demo dataset from this device's Python standard library."""
    assert api.db is not None and api.jobs is not None
    dataset_id, now = new_id("ds"), time.time()
    async with api.db_lock:
        await api.db.execute(
            "INSERT INTO datasets (id, name, source, format, text_column, status, created_at, updated_at)"
            " VALUES (?, ?, 'demo', 'python-docstrings', 'text', 'ingesting', ?, ?)",
            (dataset_id, DEMO_DATASET_NAME, now, now))
    job = await api.jobs.create("dataset.demo", {"dataset_id": dataset_id}, target=("dataset", dataset_id))
    async with api.db_lock:
        await api.db.execute("UPDATE datasets SET job_id = ? WHERE id = ?", (job.id, dataset_id))
    return job


async def create_demo_model(api: ApiState) -> Job:
    """Register the demo model shipped in appliance/demo/model (a job loads it and reads its layers)."""
    assert api.db is not None and api.jobs is not None
    model_id, now = new_id("m"), time.time()
    async with api.db_lock:
        await api.db.execute(
            "INSERT INTO models (id, name, source, precision, status, path, created_at, updated_at)"
            " VALUES (?, ?, 'demo', 'fp32', 'loading', ?, ?, ?)", (model_id, DEMO_MODEL_NAME, str(MODEL_DIR), now, now))
    job = await api.jobs.create("model.register", {"model_id": model_id, "path": str(MODEL_DIR), "precision": "fp32"},
                                target=("model", model_id))
    async with api.db_lock:
        await api.db.execute("UPDATE models SET job_id = ? WHERE id = ?", (job.id, model_id))
    return job


async def _job_id(job: Awaitable[Job]) -> str:
    return (await job).id


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
