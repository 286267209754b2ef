"""The storage view's API against a real appliance: every byte of the data dir attributed once, sizes
equal to a walk of the files, largest first; a prune of a training's checkpoints keeps the newest, the
best and the user's own (the automatic bound's rule) and frees exactly what it removed; cache entries
(uploads and leftovers no resource owns) prune too; what a queued or running job uses is refused; the
prunes are state changes under the one access decision."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance.contracts.checkpoint_retention import Saved, kept_steps
from tests.support import Appliance, demo_activations, started_demo
from tests.test_api_contract import assert_error

LAYER = 2
STEPS = 8
OWN_FILES = ("mistudio.db", "queue.db")  # written all the time by both processes: not compared byte for byte


@pytest.fixture(scope="module")
def app(tmp_path_factory) -> Iterator[Appliance]:
    # 0: the automatic bound keeps every checkpoint, so the prune has something to do.
    yield from started_demo(tmp_path_factory, "storage", MISTUDIO_KEEP_CHECKPOINTS="0")


@pytest.fixture(scope="module")
def activation_set(app: Appliance) -> dict:
    return demo_activations(app, LAYER, hook_types=["residual"], batch_size=32, max_samples=200, context_length=64)[1]


def start_training(app: Appliance, act: dict, total_steps: int) -> dict:
    body = {
        "activation_id": act["id"],
        "layer": LAYER,
        "encoder_type": "topk",
        "seed": 3,
        "auto_save_interval": 1,
        "hyperparameters": {"k": 8, "expansion_factor": 4, "batch_size": 64, "total_steps": total_steps},
    }
    response = app.post("/api/training/start", json=body)
    assert response.status_code == 202, response.text
    return response.json()["data"]


@pytest.fixture(scope="module")
def training(app: Appliance, activation_set: dict) -> dict:
    job = app.wait_status(start_training(app, activation_set, STEPS)["job_id"], "completed", "failed", timeout=300)
    assert job["status"] == "completed", job["error"]
    return app.get(f"/api/training/{job['target']['id']}").json()["data"]


def walk(path: Path) -> int:
    """The bytes of the files under ``path`` as os.walk sees them (links not followed)."""
    if path.is_file():
        return path.stat().st_size
    return sum(
        (Path(folder) / name).lstat().st_size
        for folder, _, files in os.walk(path)
        for name in files
        if not (Path(folder) / name).is_symlink()
    )


def storage(app: Appliance) -> dict:
    response = app.get("/api/system/storage")
    assert response.status_code == 200, response.text
    return response.json()["data"]


def item(listing: dict, item_id: str) -> dict:
    return next(i for i in listing["items"] if i["id"] == item_id)


def test_sizes_are_the_files_on_disk_largest_first(app: Appliance, activation_set: dict, training: dict) -> None:
    data = app.data_dir
    listing = storage(app)
    items = listing["items"]
    assert [i["bytes"] for i in items] == sorted((i["bytes"] for i in items), reverse=True)

    # Each resource is its folders (and its upload), by a walk of the files.
    folders = {"dataset": "datasets", "model": "models", "activation_set": "activations", "training": "trainings"}
    resources = [i for i in items if i["kind"] in folders]
    assert {i["kind"] for i in resources} == set(folders)
    for entry in resources:
        expected = walk(data / folders[entry["kind"]] / entry["id"]) + walk(data / "uploads" / entry["id"])
        assert entry["bytes"] == expected, entry
        assert entry["path"] == f"{folders[entry['kind']]}/{entry['id']}"
        assert sum(p["bytes"] for p in entry["parts"]) in (0, entry["bytes"]), entry

    tr = item(listing, training["id"])
    parts = {p["name"]: p for p in tr["parts"]}
    checkpoints = data / "trainings" / training["id"] / "checkpoints"
    assert parts["checkpoints"]["bytes"] == walk(checkpoints) and parts["checkpoints"]["count"] == STEPS
    assert parts["export"]["bytes"] == walk(data / "trainings" / training["id"] / "export") > 0

    # What is built on a resource is named, as its DELETE refuses for.
    model = item(listing, activation_set["model_id"])
    assert {(d["kind"], d["id"]) for d in model["used_by"]} >= {
        ("activation_set", activation_set["id"]),
        ("training", training["id"]),
    }
    # Named as a delete refusal names them; the list's own name adds the model it reads.
    named = {d["id"]: d["name"] for d in model["used_by"]}
    assert named[training["id"]] == "topk k=8 L2 residual"
    assert named[activation_set["id"]] == "L2 residual"
    assert tr["name"] == f"topk k=8 L2 residual · {model['name']}"

    # Every byte of the data dir is attributed once (the two databases change as they are read).
    others = sum(i["bytes"] for i in items if not i["path"].startswith(OWN_FILES))
    on_disk = sum(walk(p) for p in data.iterdir() if not p.name.startswith(OWN_FILES))
    assert others == on_disk
    assert listing["disk"]["data_bytes"] == sum(i["bytes"] for i in items)
    assert listing["disk"]["reserve_bytes"] == 256 * 1024 * 1024
    assert 0 < listing["disk"]["free_bytes"] <= listing["disk"]["total_bytes"]


def test_prune_keeps_the_newest_and_the_best_and_frees_the_bytes(app: Appliance, training: dict) -> None:
    tid = training["id"]
    folder = app.data_dir / "trainings" / tid / "checkpoints"
    listed = app.get(f"/api/training/{tid}/checkpoints").json()["data"]
    assert [c["step"] for c in listed] == list(range(1, STEPS + 1))
    best = min(listed, key=lambda c: (c["held_out_loss"], c["step"]))["step"]
    expected = sorted({STEPS, best})
    gone = [folder / f"step_{c['step']:08d}" for c in listed if c["step"] not in expected]
    gone_bytes = sum(walk(p) for p in gone)
    assert item(storage(app), tid)["reclaimable_bytes"] == gone_bytes > 0

    # Another site's page cannot prune (the one access decision for state changes).
    with app.client() as client:
        refused = client.post(f"/api/system/storage/trainings/{tid}/prune", headers={"Origin": "http://evil.example"})
    assert_error(refused, 403, "FORBIDDEN")
    assert len(list(folder.iterdir())) == STEPS

    response = app.post(f"/api/system/storage/trainings/{tid}/prune")
    assert response.status_code == 200, response.text
    pruned = response.json()["data"]
    assert pruned["freed_bytes"] == gone_bytes
    assert sorted(pruned["removed"]) == sorted(f"trainings/{tid}/checkpoints/{p.name}" for p in gone)
    assert sorted(p.name for p in folder.iterdir()) == [f"step_{s:08d}" for s in expected]
    assert [c["step"] for c in app.get(f"/api/training/{tid}/checkpoints").json()["data"]] == expected
    after = item(storage(app), tid)
    assert after["reclaimable_bytes"] == 0
    assert {p["name"]: p["count"] for p in after["parts"]}["checkpoints"] == len(expected)
    again = app.post(f"/api/system/storage/trainings/{tid}/prune").json()["data"]
    assert again == {"freed_bytes": 0, "removed": []}


def test_a_running_jobs_training_is_refused(app: Appliance, activation_set: dict, training: dict) -> None:
    job = start_training(app, activation_set, total_steps=1_000_000)
    tid = app.job(job["job_id"])["target"]["id"]
    try:
        # Queued or running: the job writes and prunes its checkpoints itself.
        error = assert_error(app.post(f"/api/system/storage/trainings/{tid}/prune"), 409, "CONFLICT")
        assert job["job_id"] in error["message"], error
        assert item(storage(app), tid)["busy"]
    finally:
        assert app.post(f"/api/jobs/{job['job_id']}/cancel").status_code == 200
        app.wait_status(job["job_id"], "cancelled", timeout=120)
    assert item(storage(app), tid)["busy"] is None
    assert app.post(f"/api/system/storage/trainings/{tid}/prune").status_code == 200
    assert_error(app.post("/api/system/storage/trainings/tr_nonexistent1/prune"), 404, "NOT_FOUND")


def test_cache_entries_prune_unless_in_use(app: Appliance, training: dict) -> None:
    data = app.data_dir
    # A Hub download's cache, an upload no resource owns (left long ago), one still arriving, and the
    # folder of a training whose row is gone.
    hub = data / "cache" / "huggingface" / "hub" / "models--org--tiny"
    (hub / "blobs").mkdir(parents=True)
    (hub / "blobs" / "abc").write_bytes(b"w" * 5000)
    (hub / "snapshots" / "r1").mkdir(parents=True)
    (hub / "snapshots" / "r1" / "model.safetensors").symlink_to(hub / "blobs" / "abc")
    old = data / "uploads" / "ds_leftover1234"
    old.mkdir(parents=True)
    (old / "corpus.jsonl").write_bytes(b"x" * 3000)
    long_ago = time.time() - 3600
    for path in (old / "corpus.jsonl", old):
        os.utime(path, (long_ago, long_ago))
    arriving = data / "uploads" / "ds_arriving1234"
    arriving.mkdir()
    (arriving / "upload").write_bytes(b"y" * 2000)
    orphan = data / "trainings" / "tr_deleted12345"
    (orphan / "checkpoints").mkdir(parents=True)
    (orphan / "checkpoints" / "w").write_bytes(b"z" * 1000)

    entries = {i["path"]: i for i in storage(app)["items"] if i["kind"] == "cache"}
    expected = {
        "cache/huggingface/hub/models--org--tiny": 5000,  # the blob once, its link not followed
        "uploads/ds_leftover1234": 3000,
        "uploads/ds_arriving1234": 2000,
        "trainings/tr_deleted12345": 1000,
    }
    assert {p: entries[p]["bytes"] for p in expected} == expected
    assert entries["cache/huggingface/hub/models--org--tiny"]["name"] == "Hub download cache: org/tiny (model)"
    assert entries["uploads/ds_arriving1234"]["busy"]

    def prune(path: str):
        return app.post("/api/system/storage/cache/prune", json={"path": path})

    assert_error(prune("uploads/ds_arriving1234"), 409, "CONFLICT")
    assert arriving.is_dir()
    for path, size in expected.items():
        if path == "uploads/ds_arriving1234":
            continue
        response = prune(path)
        assert response.status_code == 200, response.text
        assert response.json()["data"] == {"freed_bytes": size, "removed": [path]}
        assert not (data / path).exists()
    # Only what the listing names: a resource's folder, the database or a path outside are not cache entries.
    for path in (f"trainings/{training['id']}", "mistudio.db", "../etc", "uploads"):
        assert_error(prune(path), 404, "NOT_FOUND")
    assert (data / "trainings" / training["id"]).is_dir() and (data / "mistudio.db").is_file()
    assert_error(app.post("/api/system/storage/cache/prune", json={"path": 3}), 400, "VALIDATION_ERROR")


def test_the_retention_rule() -> None:
    saved = [Saved(1, "auto", 0.5), Saved(2, "user", 0.9), Saved(3, "auto", 0.4), Saved(4), Saved(5, "auto", 0.7)]
    assert kept_steps(saved, 1) == {5, 3, 2}  # newest, lowest held-out loss, the user's own
    assert kept_steps(saved, 2) == {4, 5, 3, 2}
    assert kept_steps(saved, 0) == {1, 2, 3, 4, 5}
    assert kept_steps([Saved(1, "auto", 0.3), Saved(2, "auto", 0.3), Saved(3)], 1) == {1, 3}  # the earliest on a tie
