"""Starting a training is one commit: the training row, its job, the job's event and the job's queued
task are written together or not at all, so an API that dies at any point of a start leaves no
training without its job. Also: the defaults the API gives (one set, shared with SAEConfig) and the
actions each training status allows.

The app runs in-process (no worker) against a real SQLite file, so every statement on the API's
connection can be traced."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from litestar.testing import TestClient

from appliance.api.app import create_app
from appliance.config import load_settings
from appliance.contracts.hyperparameters import ARCHITECTURE_DEFAULTS, Hyperparameters, for_architecture
from appliance.data import migrate
from appliance.services.training import actions

D_MODEL = 16
HOOK_POINTS = [{"layer": 0, "type": "residual", "name": "blocks.0.hook_resid_post", "module": "transformer.h.0"}]


def _seed(db_path: Path) -> tuple[str, str]:
    """A ready model and a ready dataset, as their jobs would have left them."""
    migrate(db_path)
    now = time.time()
    architecture = {
        "family": "gpt2",
        "layers": 1,
        "d_model": D_MODEL,
        "parameters": 10_000,
        "context_length": 128,
        "hook_points": HOOK_POINTS,
    }
    conn = sqlite3.connect(db_path)
    with conn:
        conn.execute(
            "INSERT INTO models (id, name, source, precision, status, path, architecture, created_at,"
            " updated_at) VALUES ('m_atomic0001', 'tiny', 'local', 'fp32', 'ready', '/nowhere', ?, ?, ?)",
            (json.dumps(architecture), now, now),
        )
        conn.execute(
            "INSERT INTO datasets (id, name, source, status, num_samples, created_at, updated_at)"
            " VALUES ('ds_atomic0001', 'texts', 'local', 'ready', 100, ?, ?)",
            (now, now),
        )
    conn.close()
    return "m_atomic0001", "ds_atomic0001"


@pytest.fixture
def started(tmp_path: Path) -> Iterator[tuple[TestClient, Any, dict[str, str]]]:
    settings = msgspec.structs.replace(load_settings(), data_dir=tmp_path, seed_demo=False)
    model_id, dataset_id = _seed(settings.db_path)
    app = create_app(settings)
    with TestClient(app) as client:
        body = {
            "model_id": model_id,
            "dataset_id": dataset_id,
            "layer": 0,
            "encoder_type": "topk",
            "hyperparameters": {"k": 8, "total_steps": 10},
        }
        yield client, app.state["api"], body


def _rows(db_path: Path, sql: str) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(db_path)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


ORPHANS = "SELECT t.id FROM trainings t LEFT JOIN jobs j ON j.id = t.job_id AND j.target_id = t.id WHERE j.id IS NULL"


def test_a_training_start_is_one_commit_holding_row_job_event_and_task(started) -> None:
    client, api, body = started
    trace: list[str] = []
    original = api.queue.enqueue

    def enqueue(job_id: str, lane: str, delay: float | None = None) -> None:
        trace.append("ENQUEUE")
        original(job_id, lane, delay)

    api.queue.enqueue = enqueue
    client.blocking_portal.call(api.db.set_trace_callback, trace.append)
    try:
        response = client.post("/api/training/start", json=body)
    finally:
        client.blocking_portal.call(api.db.set_trace_callback, None)
    assert response.status_code == 202, response.text
    job_id = response.json()["data"]["job_id"]

    commits = [i for i, statement in enumerate(trace) if statement.strip().upper() == "COMMIT"]
    assert len(commits) == 1, trace
    begin = next(i for i, s in enumerate(trace) if s.strip().upper().startswith("BEGIN"))
    inside = trace[begin : commits[0]]
    for part in (
        "INSERT INTO trainings",
        "INSERT INTO jobs",
        "INSERT INTO events",
        "UPDATE trainings SET job_id",
        "ENQUEUE",
    ):
        assert any(s.startswith(part) for s in inside), (part, inside)
    # Nothing else writes for this request outside that transaction.
    writes = [
        s
        for s in trace[:begin] + trace[commits[0] + 1 :]
        if s.split(" ", 1)[0].upper() in ("INSERT", "UPDATE", "DELETE", "REPLACE")
    ]
    assert writes == [], writes

    training = client.get(f"/api/training/{_rows(api.settings.db_path, 'SELECT id FROM trainings')[0][0]}").json()
    assert training["data"]["job_id"] == job_id and training["data"]["status"] == "queued"
    assert training["data"]["actions"] == ["cancel"]
    assert job_id in api.queue.queued_job_ids()
    assert _rows(api.settings.db_path, ORPHANS) == []


def test_an_api_that_dies_before_the_commit_leaves_no_training_and_no_job(started) -> None:
    """The task is sent last, just before COMMIT: failing there (the API killed, the queue's disk full)
    stands for dying at any earlier step too, since nothing before COMMIT is visible to anyone."""
    client, api, body = started
    assert client.post("/api/training/start", json=body).status_code == 202

    def dies(job_id: str, lane: str, delay: float | None = None) -> None:
        raise OSError(28, "No space left on device")

    api.queue.enqueue = dies
    failed = client.post("/api/training/start", json=body)
    assert failed.status_code >= 500, failed.text
    db_path = api.settings.db_path
    assert len(_rows(db_path, "SELECT id FROM trainings")) == 1
    assert len(_rows(db_path, "SELECT id FROM jobs WHERE kind = 'training.run'")) == 1
    assert _rows(db_path, ORPHANS) == []


def test_the_api_gives_one_set_of_defaults_and_sae_config_shares_it(started) -> None:
    from appliance.pipeline.sae import SAEConfig, sae_config

    client, _, _ = started
    defaults = client.get("/api/training/defaults").json()["data"]
    each = defaults.pop("by_encoder_type")
    assert set(each) == set(ARCHITECTURE_DEFAULTS)
    # The flat fields keep their shape: a sparse SAE's defaults, every field a number.
    assert defaults == each["sparse"] == msgspec.to_builtins(for_architecture(Hyperparameters(), "sparse"))
    assert defaults["jumprelu_init_threshold"] == 0.5 and defaults["dead_tokens"] == 1_000_000
    for kind, own in ARCHITECTURE_DEFAULTS.items():
        assert each[kind]["learning_rate"] == own.learning_rate and each[kind]["l1_coefficient"] == own.l1_coefficient
        hp = msgspec.convert(each[kind], Hyperparameters)
        built, bare = sae_config(kind, D_MODEL, hp), SAEConfig(kind, D_MODEL, hp.expansion_factor * D_MODEL)
        assert built == bare, kind  # an SAE built without a training gets the numbers of the API's default one


def test_a_training_that_names_no_coefficient_records_its_architectures_default(started) -> None:
    """The L1 architectures differ in learning rate and L1 coefficient; TopK and JumpReLU have no L1 term
    and record none. A number the request names is kept whatever the architecture."""
    client, _, body = started
    each = client.get("/api/training/defaults").json()["data"]["by_encoder_type"]
    assert len({(each[k]["learning_rate"], each[k]["l1_coefficient"]) for k in ("sparse", "topk")}) == 2
    for kind in ("sparse", "skip", "topk", "jumprelu"):
        response = client.post("/api/training/start", json={**body, "encoder_type": kind})
        assert response.status_code == 202, response.text
        job = client.get(f"/api/jobs/{response.json()['data']['job_id']}").json()["data"]
        training = client.get(f"/api/training/{job['target']['id']}").json()["data"]
        for recorded in (training["config"]["hyperparameters"], job["params"]["hyperparameters"]):
            assert recorded["learning_rate"] == ARCHITECTURE_DEFAULTS[kind].learning_rate, kind
            assert recorded["l1_coefficient"] == ARCHITECTURE_DEFAULTS[kind].l1_coefficient, kind
            assert recorded["l1_coefficient"] == each[kind]["l1_coefficient"], kind
    named = {**body, "encoder_type": "skip", "hyperparameters": {"l1_coefficient": 0.7, "learning_rate": 1e-4}}
    job_id = client.post("/api/training/start", json=named).json()["data"]["job_id"]
    recorded = client.get(f"/api/jobs/{job_id}").json()["data"]["params"]["hyperparameters"]
    assert (recorded["l1_coefficient"], recorded["learning_rate"]) == (0.7, 1e-4)


def test_a_training_shows_the_width_it_builds_and_the_factor_that_width_is(started) -> None:
    """The SAE is d_sae wide when the request names d_sae, else expansion_factor x d_in: the resource (and
    its config's hyperparameters, as listed too) shows that width and d_sae / d_in as its expansion factor,
    never the form's default factor beside a d_sae that overrides it."""
    client, _, body = started
    for asked, (d_sae, factor) in (
        ({"d_sae": 24 * D_MODEL}, (24 * D_MODEL, 24)),
        ({"d_sae": 40}, (40, 2.5)),  # not a whole multiple of d_in: the exact ratio
        ({"expansion_factor": 4}, (4 * D_MODEL, 4)),
        ({}, (Hyperparameters().expansion_factor * D_MODEL, Hyperparameters().expansion_factor)),
    ):
        hp = {**body["hyperparameters"], **asked}
        job_id = client.post("/api/training/start", json={**body, "hyperparameters": hp}).json()["data"]["job_id"]
        training_id = client.get(f"/api/jobs/{job_id}").json()["data"]["target"]["id"]
        shown = client.get(f"/api/training/{training_id}").json()["data"]
        listed = next(t for t in client.get("/api/training").json()["data"] if t["id"] == training_id)
        for training in (shown, listed):
            assert (training["d_in"], training["d_sae"], training["expansion_factor"]) == (D_MODEL, d_sae, factor)
            recorded = training["config"]["hyperparameters"]
            assert (recorded["d_sae"], recorded["expansion_factor"]) == (d_sae, factor), asked


def test_each_status_allows_its_own_actions() -> None:
    assert actions("queued") == ["cancel"]
    assert actions("running") == ["pause", "stop", "save_checkpoint", "cancel"]
    assert actions("paused") == ["resume", "stop", "cancel", "load_checkpoint", "delete"]
    assert set(actions("completed")) == {"evaluate", "export", "retry", "load_checkpoint", "delete"}
    assert set(actions("failed")) == {"retry", "load_checkpoint", "delete"}
    assert actions("completed", imported=True) == ["evaluate", "export", "delete"]
    assert actions("failed", imported=True) == ["delete"]


def test_save_now_is_a_control_value_on_the_running_job(started) -> None:
    """ "Save now" travels like pause and stop: the API sets the job's control, the worker relays it."""
    client, api, body = started
    job_id = client.post("/api/training/start", json=body).json()["data"]["job_id"]
    training_id = _rows(api.settings.db_path, "SELECT id FROM trainings")[0][0]
    assert client.post(f"/api/training/{training_id}/checkpoints").status_code == 409  # queued: nothing to save
    conn = sqlite3.connect(api.settings.db_path)
    with conn:  # as the worker leaves them once the run has started
        conn.execute("UPDATE jobs SET status = 'running' WHERE id = ?", (job_id,))
        conn.execute("UPDATE trainings SET status = 'running' WHERE id = ?", (training_id,))
    conn.close()
    response = client.post(f"/api/training/{training_id}/checkpoints")
    assert response.status_code == 202, response.text
    assert response.json()["data"]["actions"] == ["pause", "stop", "save_checkpoint", "cancel"]
    assert _rows(api.settings.db_path, f"SELECT control FROM jobs WHERE id = '{job_id}'") == [("save",)]
