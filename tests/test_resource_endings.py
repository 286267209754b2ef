"""Whatever ends a job leaves its resource final: jobs cancelled while still queued (no worker
running, so they cannot have started), and resources found stuck in progress at worker start."""

from __future__ import annotations

import json
import sqlite3
import time

from tests.support import Appliance, demo_kit, wait_until

RETRY = "CANCELLED"


def _jobs(app: Appliance, kind: str) -> list[dict]:
    return [j for j in app.get("/api/jobs", params={"kind": kind}).json()["data"]]


def _cancel(app: Appliance, job_id: str) -> dict:
    response = app.post(f"/api/jobs/{job_id}/cancel")
    assert response.status_code == 200, response.text
    job = response.json()["data"]
    assert job["status"] == "cancelled" and job["started_at"] is None, job
    return job


def _accepted(response) -> str:
    assert response.status_code == 202, response.text
    return response.json()["data"]["job_id"]


def _tokenization(app: Appliance, dataset_id: str, tokenizer: str = "demo") -> dict | None:
    found = [
        t for t in app.get(f"/api/datasets/{dataset_id}").json()["data"]["tokenizations"] if t["tokenizer"] == tokenizer
    ]
    return found[0] if found else None


def test_cancelling_queued_jobs_leaves_each_resource_final_deletable_and_startable_again(make_appliance) -> None:
    app = make_appliance({"MISTUDIO_SEED_DEMO": "1", "HF_HUB_OFFLINE": "1"})
    app.start_api()  # no worker: every job stays queued until cancelled

    # The first start's seeds: the demo dataset (ingesting) and the demo model (loading).
    wait_until(lambda: _jobs(app, "dataset.demo") and _jobs(app, "model.register"), what="the seed jobs")
    _cancel(app, _jobs(app, "dataset.demo")[0]["id"])
    model_job = _cancel(app, _jobs(app, "model.register")[0]["id"])
    model = app.get(f"/api/models/{model_job['target']['id']}").json()["data"]
    assert model["status"] == "error" and model["error"]["code"] == RETRY, model
    # A cancelled import leaves nothing: the demo dataset is gone and can be built again.
    assert not [d for d in app.get("/api/datasets").json()["data"] if d["source"] == "demo"]
    _accepted(app.post("/api/datasets/demo"))
    assert app.client().delete(f"/api/models/{model['id']}").status_code == 200
    _accepted(app.post("/api/models/demo"))

    # An upload whose import is cancelled: no dataset, no uploaded file left.
    files = {"file": ("cancel.jsonl", b'{"text": "never imported"}\n' * 50, "application/octet-stream")}
    job_id = _accepted(app.post("/api/datasets/upload", files=files))
    dataset_id = _cancel(app, job_id)["target"]["id"]
    assert app.get(f"/api/datasets/{dataset_id}").status_code == 404
    assert not (app.data_dir / "uploads" / dataset_id).exists()

    app.start_worker()
    model, dataset = demo_kit(app, timeout=300)
    app.stop_proc(app.worker)

    # A tokenization cancelled before it started: an error (there was no earlier one), and the same
    # dataset and tokenizer can be tokenized again at once.
    _cancel(app, _accepted(app.post(f"/api/datasets/{dataset['id']}/tokenize", json={"tokenizer": "demo"})))
    tokenization = _tokenization(app, dataset["id"])
    assert tokenization and tokenization["status"] == "error", tokenization
    retokenize = _accepted(app.post(f"/api/datasets/{dataset['id']}/tokenize", json={"tokenizer": "demo"}))

    # An extraction cancelled before it started leaves no set (the job keeps the record); a new one is
    # accepted.
    extract = {"dataset_id": dataset["id"], "layers": [0], "max_samples": 20, "context_length": 32}
    job = _cancel(app, _accepted(app.post(f"/api/models/{model['id']}/extract-activations", json=extract)))
    assert app.get(f"/api/activations/{job['target']['id']}").status_code == 404
    assert job["target"]["id"] not in {s["id"] for s in app.get("/api/activations").json()["data"]}
    _cancel(app, _accepted(app.post(f"/api/models/{model['id']}/extract-activations", json=extract)))

    # A training cancelled before it started: cancelled (retry allowed), not queued for ever.
    job = _cancel(
        app,
        _accepted(
            app.post(
                "/api/training/start",
                json={
                    "model_id": model["id"],
                    "dataset_id": dataset["id"],
                    "layer": 0,
                    "max_samples": 20,
                    "hyperparameters": {"total_steps": 5, "batch_size": 16},
                },
            )
        ),
    )
    training = app.get(f"/api/training/{job['target']['id']}").json()["data"]
    assert training["status"] == "cancelled", training

    # Back with a worker: nothing it finds is stuck, and the new tokenization runs to the end.
    app.start_worker()
    done = app.wait_status(retokenize, "completed", "failed", timeout=300)
    assert done["status"] == "completed", done["error"]
    assert _tokenization(app, dataset["id"])["status"] == "ready"
    assert app.get(f"/api/training/{training['id']}").json()["data"]["status"] == "cancelled"


def test_resources_stuck_in_progress_are_ended_at_worker_start(make_appliance) -> None:
    """Rows left in progress by an older version (their job cancelled, failed or gone) are ended when
    the worker starts; a paused training whose job is over (a loaded checkpoint) is not stuck."""
    app = make_appliance()
    app.start_api()  # migrates the database
    app.stop_proc(app.api)
    old = time.time() - 3600
    db = sqlite3.connect(app.data_dir / "mistudio.db")
    with db:
        for job_id, kind, status in (
            ("job_cancelled1", "activations.extract", "cancelled"),
            ("job_failed1", "dataset.tokenize", "failed"),
            ("job_completed1", "training.run", "completed"),
        ):
            db.execute(
                "INSERT INTO jobs (id, kind, lane, status, params, created_at, updated_at)"
                " VALUES (?, ?, 'heavy', ?, '{}', ?, ?)",
                (job_id, kind, status, old, old),
            )
        db.execute(
            "INSERT INTO datasets (id, name, source, format, status, job_id, created_at, updated_at)"
            " VALUES ('ds_stuckupload', 'u', 'upload', 'jsonl', 'ingesting', 'job_vanished1', ?, ?)",
            (old, old),
        )
        db.execute(
            "INSERT INTO datasets (id, name, source, format, status, created_at, updated_at)"
            " VALUES ('ds_readyset1', 'r', 'local', 'jsonl', 'ready', ?, ?)",
            (old, old),
        )
        db.execute(
            "INSERT INTO dataset_tokenizations (dataset_id, tokenizer, settings, status, job_id, created_at,"
            " updated_at) VALUES ('ds_readyset1', 'demo', '{}', 'tokenizing', 'job_failed1', ?, ?)",
            (old, old),
        )
        db.execute(
            "INSERT INTO models (id, name, source, precision, status, path, created_at, updated_at)"
            " VALUES ('m_stuckdemo', 'demo', 'demo', 'fp32', 'loading', '/nowhere', ?, ?)",
            (old, old),
        )
        db.execute(
            "INSERT INTO activation_sets (id, model_id, dataset_id, status, config, job_id, created_at,"
            " updated_at) VALUES ('act_stuckset1', 'm_stuckdemo', 'ds_readyset1', 'extracting', '{}',"
            " 'job_cancelled1', ?, ?)",
            (old, old),
        )
        for training_id, status, job_id in (
            ("tr_stuckqueued", "queued", "job_vanished2"),
            ("tr_loadedckpt", "paused", "job_completed1"),
        ):
            db.execute(
                "INSERT INTO trainings (id, model_id, dataset_id, layer, hook_type, encoder_type, config,"
                " status, job_id, total_steps, created_at, updated_at)"
                " VALUES (?, 'm_stuckdemo', 'ds_readyset1', 0, 'residual', 'topk', ?, ?, ?, 10, ?, ?)",
                (training_id, json.dumps({"hyperparameters": {}}), status, job_id, old, old),
            )
    db.close()
    upload = app.data_dir / "uploads" / "ds_stuckupload"
    upload.mkdir(parents=True)
    (upload / "data.jsonl").write_text('{"text": "x"}\n')
    (app.data_dir / "activations" / "act_stuckset1.partial").mkdir(parents=True)

    app.start_api()
    app.start_worker()

    assert app.get("/api/datasets/ds_stuckupload").status_code == 404
    assert not upload.exists() and not (app.data_dir / "activations" / "act_stuckset1.partial").exists()
    assert _tokenization(app, "ds_readyset1")["status"] == "error"
    model = app.get("/api/models/m_stuckdemo").json()["data"]
    assert model["status"] == "error" and model["error"]["code"] == "WORKER_RESTARTED", model
    activation = app.get("/api/activations/act_stuckset1").json()["data"]
    assert activation["status"] == "error", activation
    assert app.get("/api/training/tr_stuckqueued").json()["data"]["status"] == "failed"
    assert app.get("/api/training/tr_loadedckpt").json()["data"]["status"] == "paused"
    # Final means usable again: deletable, and a new tokenization of the same pair is accepted.
    assert app.client().delete("/api/activations/act_stuckset1").status_code == 200
    _accepted(app.post("/api/datasets/ds_readyset1/tokenize", json={"tokenizer": "demo"}))
    assert "left in progress with no job working on it" in app.log("worker")
