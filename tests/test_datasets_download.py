"""Hub downloads through the API and the worker, against the fake hub on loopback."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.fakehub import FakeHub, Repo
from tests.support import Appliance, appliance_at, downloaded, started
from tests.test_fakehub import ROWS, _parquet

TOKEN = "hf_s3cr3t_token"
BIG_ROWS = 1200
BIG_JSONL = "".join(json.dumps({"text": f"row {i} " + "lorem ipsum " * 850}) + "\n" for i in range(BIG_ROWS)).encode()


@pytest.fixture(scope="module")
def hub() -> Iterator[FakeHub]:
    hub = FakeHub().start()
    hub.add(Repo("acme/tiny-parquet", "dataset", {"data/train-00000-of-00001.parquet": _parquet(ROWS)}))
    jsonl = "".join(json.dumps(row) + "\n" for row in ROWS).encode()
    hub.add(Repo("acme/tiny-jsonl", "dataset", {"data/train.jsonl": jsonl}))
    hub.add(Repo("acme/gated", "dataset", {"data/train.jsonl": jsonl}, token=TOKEN))
    hub.add(Repo("acme/flaky", "dataset", {"data/train.jsonl": jsonl}))
    # Bigger than huggingface_hub's 10 MB read chunk, so a cut connection leaves bytes to resume from.
    hub.add(Repo("acme/spreadsheet", "dataset", {"data/train.xlsx": b"PK\x03\x04 not really"}))
    hub.add(Repo("acme/resumable", "dataset", {"data/train.jsonl": BIG_JSONL}))
    yield hub
    hub.stop()


@pytest.fixture(scope="module")
def app(hub: FakeHub, tmp_path_factory) -> Iterator[Appliance]:
    yield from started(appliance_at(tmp_path_factory.mktemp("download"), hub.env))


def download(app: Appliance, **body) -> tuple[dict, dict]:
    return downloaded(app, "datasets", 120, **body)


def test_download_parquet_and_stream_jsonl(app: Appliance) -> None:
    job, dataset = download(app, repo_id="acme/tiny-parquet")
    assert job["status"] == "completed", job["error"]
    assert dataset["status"] == "ready" and dataset["source"] == "huggingface" and dataset["num_samples"] == len(ROWS)
    texts = [s["text"] for s in app.get(f"/api/datasets/{dataset['id']}/samples", params={"limit": 50}).json()["data"]]
    assert texts == [row["text"] for row in ROWS]
    events = app.get(f"/api/jobs/{job['id']}/events", params={"format": "json"}).json()["data"]
    assert any(e["type"] == "dataset.progress" for e in events)
    assert any(e["type"] == "dataset.updated" and e["data"]["status"] == "ready" for e in events)
    cats = app.get(f"/api/datasets/{dataset['id']}/samples", params={"search": "cats"}).json()
    assert cats["meta"]["pagination"]["total"] == sum("cats" in r["text"] for r in ROWS)

    job, dataset = download(app, repo_id="acme/tiny-jsonl", max_samples=5)
    assert job["status"] == "completed" and dataset["num_samples"] == 5


def test_gated_dataset_needs_its_token_which_is_never_shown(app: Appliance) -> None:
    job, dataset = download(app, repo_id="acme/gated")
    assert job["status"] == "failed" and job["error"]["code"] == "ACCESS_DENIED" and "token" in job["error"]["message"]
    assert dataset["status"] == "error" and dataset["error"]["code"] == "ACCESS_DENIED"
    job, dataset = download(app, repo_id="acme/gated", hf_token=TOKEN)
    assert job["status"] == "completed" and dataset["num_samples"] == len(ROWS)
    seen = [
        app.get(f"/api/jobs/{job['id']}").text,
        app.get("/api/datasets").text,
        app.get(f"/api/jobs/{job['id']}/events", params={"format": "json"}).text,
    ]
    assert all(TOKEN not in text for text in seen)
    assert not any((app.data_dir / "secrets").glob("*"))  # deleted after use
    logs = app.log("worker") + app.log("serve")
    assert TOKEN not in logs


def test_missing_repo_and_lost_hub_are_clear_and_a_retry_works(app: Appliance, hub: FakeHub) -> None:
    job, dataset = download(app, repo_id="acme/nope")
    assert job["error"]["code"] == "NOT_FOUND" and "acme/nope" in job["error"]["message"]
    hub.files_broken.set()
    try:
        job, dataset = download(app, repo_id="acme/flaky")
    finally:
        hub.files_broken.clear()
    assert job["status"] == "failed" and job["error"]["code"] == "UPSTREAM_UNAVAILABLE", job["error"]
    assert not (app.data_dir / "datasets" / dataset["id"]).exists()
    job, dataset = download(app, repo_id="acme/flaky")
    assert job["status"] == "completed" and dataset["num_samples"] == len(ROWS)


def test_an_interrupted_file_download_resumes_where_it_stopped(app: Appliance, hub: FakeHub) -> None:
    size = len(BIG_JSONL)
    hub.cut_next_file_at = size * 9 // 10
    job, dataset = download(app, repo_id="acme/resumable")
    if job["status"] == "failed":  # the library gave up on the cut connection: the user retries
        assert job["error"]["code"] == "UPSTREAM_UNAVAILABLE", job["error"]
        job, dataset = download(app, repo_id="acme/resumable")
    assert job["status"] == "completed" and dataset["num_samples"] == BIG_ROWS, job["error"]
    # The second request for the file asked only for what was missing.
    resumed = [
        int(r.rsplit("=", 1)[1].rstrip("-"))
        for r in hub.requests
        if "acme/resumable" in r and "train.jsonl range=bytes=" in r
    ]
    assert resumed and 0 < resumed[0] <= size * 9 // 10, [r for r in hub.requests if "train.jsonl" in r]
    # Once ingested, the raw download is not kept twice.
    assert not list((app.data_dir / "cache" / "huggingface" / "hub").glob("datasets--acme--resumable"))


def test_a_repo_without_readable_data_files_is_a_clear_error(app: Appliance) -> None:
    job, dataset = download(app, repo_id="acme/spreadsheet")
    assert job["status"] == "failed" and job["error"]["code"] == "UNSUPPORTED_FORMAT", job["error"]
    assert "acme/spreadsheet" in job["error"]["message"] and dataset["status"] == "error"


def test_bad_requests(app: Appliance) -> None:
    from tests.test_api_contract import assert_error

    for body in (
        {"repo_id": "../../etc"},
        {"repo_id": "a b"},
        {"repo_id": "acme/x", "max_samples": 0},
        {"repo_id": "acme/x", "split": "train; rm"},
        {"repo_id": "acme/x", "unknown": 1},
        {},
    ):
        assert_error(app.post("/api/datasets/download", json=body), 400, "VALIDATION_ERROR")


def test_unreachable_hub(make_appliance) -> None:
    from tests.support import free_port

    app = make_appliance({"HF_ENDPOINT": f"http://127.0.0.1:{free_port()}"}, name="offline")
    app.start_api()
    app.start_worker()
    job, dataset = download(app, repo_id="acme/anything")
    assert job["error"]["code"] == "UPSTREAM_UNAVAILABLE" and "unreachable" in job["error"]["message"]
    assert dataset["status"] == "error"
