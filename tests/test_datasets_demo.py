"""The demo dataset: built on first start from the device's own Python standard library, offline;
created once (a deleted demo stays deleted across restarts) and rebuildable on request."""

from __future__ import annotations

from tests.support import Appliance
from tests.test_api_contract import assert_error


def _demo(app: Appliance) -> list[dict]:
    return [d for d in app.get("/api/datasets").json()["data"] if d["source"] == "demo"]


def test_demo_dataset_is_seeded_once_and_can_be_rebuilt(make_appliance) -> None:
    # No network: the hub endpoint points nowhere, and nothing may need it.
    app: Appliance = make_appliance({"MISTUDIO_SEED_DEMO": "1", "HF_HUB_OFFLINE": "1"}, name="demo")
    app.start_api()
    app.start_worker()
    (seeded,) = _demo(app)
    job = app.wait_status(seeded["job_id"], "completed", "failed", timeout=180)
    assert job["status"] == "completed", job["error"]
    dataset = app.get(f"/api/datasets/{seeded['id']}").json()["data"]
    assert dataset["status"] == "ready" and dataset["num_samples"] > 1000
    stats = dataset["stats"]
    assert set(stats["splits"]) == {"train", "validation"} and sum(stats["splits"].values()) == dataset["num_samples"]
    samples = app.get(f"/api/datasets/{dataset['id']}/samples", params={"split": "validation", "limit": 5}).json()
    assert samples["meta"]["pagination"]["total"] == stats["splits"]["validation"]
    assert all(s["split"] == "validation" and s["metadata"]["source"] for s in samples["data"])
    found = app.get(f"/api/datasets/{dataset['id']}/samples", params={"search": "socket"}).json()
    assert found["meta"]["pagination"]["total"] > 0 and "socket" in found["data"][0]["text"].lower()

    # A restart does not seed again; a deleted demo stays deleted; it can be rebuilt on request.
    app.stop_proc(app.api)
    app.start_api()
    assert [d["id"] for d in _demo(app)] == [dataset["id"]]
    assert_error(app.post("/api/datasets/demo"), 409, "CONFLICT")
    assert app.client().delete(f"/api/datasets/{dataset['id']}").status_code == 200
    app.stop_proc(app.api)
    app.start_api()
    assert _demo(app) == []
    response = app.post("/api/datasets/demo")
    assert response.status_code == 202, response.text
    job = app.wait_status(response.json()["data"]["job_id"], "completed", "failed", timeout=180)
    assert job["status"] == "completed"
    (rebuilt,) = _demo(app)
    assert rebuilt["num_samples"] == dataset["num_samples"]  # the same text, the same corpus
