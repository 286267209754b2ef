"""Models through the API and the worker: Hub download from the fake hub (gated, missing), every
precision this device supports, architecture and hook points, capabilities, the demo model, delete."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakehub import FakeHub, Repo
from tests.support import Appliance
from tests.test_api_contract import assert_error

TOKEN = "hf_model_s3cret"


def tiny_gpt2_files(tmp: Path) -> dict[str, bytes]:
    """A 2-layer GPT-2 with the demo tokenizer, as a Hub repo's files (safetensors)."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    from appliance.demo import TOKENIZER_FILE

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=4096, n_embd=32, n_layer=2, n_head=4, n_positions=64))
    model.save_pretrained(tmp)
    PreTrainedTokenizerFast(tokenizer_file=str(TOKENIZER_FILE), eos_token="<|endoftext|>").save_pretrained(tmp)
    (tmp / "README.md").write_text("a tiny model")
    (tmp / "onnx").mkdir()
    (tmp / "onnx" / "model.onnx").write_bytes(b"not wanted")
    return {str(f.relative_to(tmp)): f.read_bytes() for f in tmp.rglob("*") if f.is_file()}


@pytest.fixture(scope="module")
def hub(tmp_path_factory) -> Iterator[FakeHub]:
    files = tiny_gpt2_files(tmp_path_factory.mktemp("tiny"))
    hub = FakeHub().start()
    hub.add(Repo("acme/tiny-gpt2", "model", files))
    hub.add(Repo("acme/gated-gpt2", "model", files, token=TOKEN))
    hub.add(Repo("acme/no-weights", "model", {"config.json": files["config.json"]}))
    yield hub
    hub.stop()


@pytest.fixture(scope="module")
def app(hub: FakeHub, tmp_path_factory) -> Iterator[Appliance]:
    from tests.conftest import _appliance

    app = _appliance(tmp_path_factory.mktemp("models"), {"HF_ENDPOINT": hub.url, "HF_HUB_DISABLE_TELEMETRY": "1"})
    app.start_api()
    app.start_worker()
    yield app
    app.stop()


def download(app: Appliance, **body) -> tuple[dict, dict]:
    response = app.post("/api/models/download", json=body)
    assert response.status_code == 202, response.text
    job = app.wait_status(response.json()["data"]["job_id"], "completed", "failed", timeout=180)
    return job, app.get(f"/api/models/{job['target']['id']}").json()["data"]


def test_download_loads_and_describes_the_model(app: Appliance) -> None:
    job, model = download(app, repo_id="acme/tiny-gpt2")
    assert job["status"] == "completed", job["error"]
    assert model["status"] == "ready" and model["family"] == "gpt2" and model["layers"] == 2 and model["d_model"] == 32
    assert model["memory_mb"]["fp16"] < model["memory_mb"]["fp32"]
    files = {f.name for f in (app.data_dir / "models" / model["id"]).iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= files and "onnx" not in files
    assert "README.md" not in files
    events = app.get(f"/api/jobs/{job['id']}/events", params={"format": "json"}).json()["data"]
    assert any(e["type"] == "model.progress" and "MB" in e["data"]["message"] for e in events)
    arch = app.get(f"/api/models/{model['id']}/architecture").json()["data"]
    assert arch["layers"] == 2 and arch["vocab_size"] == 4096 and arch["heads"] == 4
    assert [p["name"] for p in arch["hook_points"] if p["layer"] == 1] == \
        ["blocks.1.hook_resid_post", "blocks.1.hook_mlp_out", "blocks.1.hook_attn_out"]
    assert arch["hook_points"][0]["module"] == "transformer.h.0"


def test_each_supported_precision_loads(app: Appliance) -> None:
    caps = app.get("/api/models/capabilities").json()["data"]
    supported = [p["name"] for p in caps["precisions"] if p["supported"]]
    assert caps["device"] == "cpu" and supported == ["fp32", "fp16", "bf16", "q8"]
    for precision in supported[1:]:
        job, model = download(app, repo_id="acme/tiny-gpt2", precision=precision)
        assert job["status"] == "completed" and model["precision"] == precision and model["layers"] == 2, job["error"]
    refused = app.post("/api/models/download", json={"repo_id": "acme/tiny-gpt2", "precision": "q4"})
    assert_error(refused, 400, "VALIDATION_ERROR")
    assert "bitsandbytes" in refused.json()["error"]["message"]


def test_gated_missing_and_weightless_repos(app: Appliance) -> None:
    job, model = download(app, repo_id="acme/gated-gpt2")
    assert job["error"]["code"] == "ACCESS_DENIED" and model["status"] == "error"
    job, model = download(app, repo_id="acme/gated-gpt2", hf_token=TOKEN)
    assert job["status"] == "completed" and model["status"] == "ready"
    assert TOKEN not in app.get("/api/models").text + app.log("worker")
    job, model = download(app, repo_id="acme/nothing-here")
    assert job["error"]["code"] == "NOT_FOUND" and "acme/nothing-here" in job["error"]["message"]
    job, model = download(app, repo_id="acme/no-weights")
    assert job["error"]["code"] == "VALIDATION_ERROR" and "weights" in job["error"]["message"]
    for body in ({"repo_id": "../x"}, {"repo_id": "a/b", "precision": "fp64"}, {"repo_id": "a/b", "x": 1}):
        assert_error(app.post("/api/models/download", json=body), 400, "VALIDATION_ERROR")


def test_delete_removes_the_files(app: Appliance) -> None:
    job, model = download(app, repo_id="acme/tiny-gpt2")
    folder = app.data_dir / "models" / model["id"]
    assert folder.is_dir()
    with app.client() as client:
        assert client.delete(f"/api/models/{model['id']}").status_code == 200
        assert_error(client.get(f"/api/models/{model['id']}"), 404, "NOT_FOUND")
        assert_error(client.get("/api/models/nope"), 400, "VALIDATION_ERROR")
    assert not folder.exists()


def test_demo_model_is_registered_on_first_start(make_appliance) -> None:
    app: Appliance = make_appliance({"MISTUDIO_SEED_DEMO": "1", "HF_HUB_OFFLINE": "1"}, name="demo-model")
    app.start_api()
    app.start_worker()
    (demo,) = [m for m in app.get("/api/models").json()["data"] if m["source"] == "demo"]
    job = app.wait_status(demo["job_id"], "completed", "failed", timeout=180)
    assert job["status"] == "completed", job["error"]
    model = app.get(f"/api/models/{demo['id']}").json()["data"]
    assert model["status"] == "ready" and model["family"] == "gpt2" and model["layers"] == 4
    assert_error(app.post("/api/models/demo"), 409, "CONFLICT")
    with app.client() as client:
        assert client.delete(f"/api/models/{demo['id']}").status_code == 200
    from appliance.demo import MODEL_DIR

    assert (MODEL_DIR / "model.safetensors").exists()  # the shipped files stay
