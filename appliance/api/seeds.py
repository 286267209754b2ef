"""What a fresh installation starts with: the demo dataset (and, as later resources land, their seeds).

Each seed is created once per data dir; the fact is kept in ``app_state`` so a seed the user deleted
stays deleted.
"""

from __future__ import annotations

import logging
import time

from appliance.api.state import ApiState
from appliance.ids import new_id
from appliance.jobs.model import Job

log = logging.getLogger("mistudio.api")

DEMO_DATASET_NAME = "Python stdlib docs (demo)"


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


async def seed_first_start(api: ApiState) -> None:
    assert api.db is not None
    if not api.settings.seed_demo:
        return
    rows = await api.db.execute_fetchall("SELECT 1 FROM app_state WHERE key = 'seeded.demo_dataset'")
    if rows:
        return
    job = await create_demo_dataset(api)
    async with api.db_lock:
        await api.db.execute("INSERT OR IGNORE INTO app_state (key, value, updated_at) VALUES"
                             " ('seeded.demo_dataset', ?, ?)", (job.id, time.time()))
    log.info("first start: building the demo dataset (job %s)", job.id)
