"""Models through the API and the worker: Hub download from the fake hub (gated, missing), every
precision this device supports, architecture and hook points, capabilities, the demo model, delete."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakehub import FakeHub, Repo
from tests.support import Appliance, appliance_at, downloaded, started
from tests.test_api_contract import assert_error

TOKEN = "hf_model_s3cret"


def tiny_gpt2_files(tmp: Path) -> dict[str, bytes]:
    """A 2-layer GPT-2 with the demo tokenizer, as a Hub repo's files (safetensors)."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    from appliance.demo_kit import TOKENIZER_FILE

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
    # Small activation shards: extractions here span several, and the memory test sees them all filled.
    env = {**hub.env, "MISTUDIO_ACTIVATION_SHARD_MB": "1"}
    yield from started(appliance_at(tmp_path_factory.mktemp("models"), env))


def download(app: Appliance, **body) -> tuple[dict, dict]:
    return downloaded(app, "models", 180, **body)


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
    assert [p["name"] for p in arch["hook_points"] if p["layer"] == 1] == [
        "blocks.1.hook_resid_post",
        "blocks.1.ln2.hook_normalized",
        "blocks.1.hook_mlp_out",
        "blocks.1.hook_attn_out",
    ]
    assert arch["hook_points"][0]["module"] == "transformer.h.0"


def test_each_supported_precision_loads(app: Appliance) -> None:
    import importlib.util

    import torch

    caps = app.get("/api/models/capabilities").json()["data"]
    supported = [p["name"] for p in caps["precisions"] if p["supported"]]
    # CPU: int8 is torch's dynamic quantization. A GPU needs bitsandbytes for int8 and 4-bit. Whether
    # there is a GPU is torch's answer in this process, not the API's own platform detection.
    if not torch.cuda.is_available():
        device, expected = "cpu", ["fp32", "fp16", "bf16", "q8"]
    elif importlib.util.find_spec("bitsandbytes") is not None:
        device, expected = "cuda", ["fp32", "fp16", "bf16", "q8", "q4"]
    else:
        device, expected = "cuda", ["fp32", "fp16", "bf16"]
    assert caps["device"] == device and supported == expected
    for precision in supported[1:]:
        job, model = download(app, repo_id="acme/tiny-gpt2", precision=precision)
        assert job["status"] == "completed" and model["precision"] == precision and model["layers"] == 2, job["error"]
    if "q4" not in supported:
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


def test_a_lost_hub_fails_clearly_and_a_retry_completes(app: Appliance, hub: FakeHub) -> None:
    hub.files_broken.set()
    try:
        job, model = download(app, repo_id="acme/tiny-gpt2", precision="bf16")
    finally:
        hub.files_broken.clear()
    assert job["error"]["code"] == "UPSTREAM_UNAVAILABLE" and model["status"] == "error", job["error"]
    assert not (app.data_dir / "models" / model["id"]).exists()
    job, model = download(app, repo_id="acme/tiny-gpt2", precision="bf16")
    assert job["status"] == "completed" and model["status"] == "ready"
    assert not list((app.data_dir / "cache" / "model-downloads").iterdir())  # staged files moved into place


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
    from appliance.demo_kit import MODEL_DIR

    assert (MODEL_DIR / "model.safetensors").exists()  # the shipped files stay


def _dataset(app: Appliance, name: str, texts: list[str]) -> str:
    import json

    folder = app.data_dir / "imports"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    response = app.post("/api/datasets/import", json={"path": name})
    job = app.wait_status(response.json()["data"]["job_id"], "completed", "failed", timeout=120)
    assert job["status"] == "completed", job["error"]
    return job["target"]["id"]


def _extract(app: Appliance, model_id: str, **body) -> tuple[dict, dict]:
    response = app.post(f"/api/models/{model_id}/extract-activations", json=body)
    assert response.status_code == 202, response.text
    job = app.wait_status(response.json()["data"]["job_id"], "completed", "failed", timeout=300)
    return job, app.get(f"/api/activations/{job['target']['id']}").json()["data"]


TEXTS = [
    f"Return the {w} of the socket number {i}, or raise an error."
    for i, w in enumerate(["name", "address", "timeout", "family", "type"] * 6)
]


def test_extracted_activations_equal_a_direct_forward_pass(app: Appliance) -> None:
    import torch
    from safetensors.torch import load_file
    from tokenizers import Tokenizer
    from transformers import AutoModelForCausalLM

    _, model = download(app, repo_id="acme/tiny-gpt2")
    dataset_id = _dataset(app, "extract.jsonl", TEXTS)
    job, act = _extract(
        app,
        model["id"],
        dataset_id=dataset_id,
        layers=[0, 1],
        hook_types=["residual", "mlp", "attention"],
        batch_size=4,
        max_samples=20,
        context_length=12,
        exclude_special_tokens=False,  # compared with the model's output at every position
    )
    assert job["status"] == "completed", job["error"]
    manifest = act["manifest"]
    assert act["status"] == "ready" and manifest["samples"] == 20 and manifest["dtype"] == "float16"
    folder = app.data_dir / "activations" / act["id"]
    assert not folder.with_name(folder.name + ".partial").exists()
    tokens = torch.cat(
        [load_file(str(folder / f"tokens_{s['index']:04d}.safetensors"))["tokens"] for s in manifest["shards"]]
    )
    assert len(tokens) == manifest["tokens"]

    path = app.data_dir / "models" / model["id"]
    reference = AutoModelForCausalLM.from_pretrained(str(path)).eval()
    tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
    tokenizer.enable_truncation(12)
    modules = dict(reference.named_modules())
    for hook in manifest["hooks"]:
        stored = torch.cat(
            [
                load_file(str(folder / f"{hook['name']}_{s['index']:04d}.safetensors"))["activations"]
                for s in manifest["shards"]
            ]
        )
        assert stored.dtype == torch.float16 and list(stored.shape) == hook["shape"]
        expected, expected_tokens = [], []
        for index, text in enumerate(TEXTS[:20]):
            ids = tokenizer.encode(text).ids
            seen = {}
            handle = modules[hook["module"]].register_forward_hook(
                lambda _m, _i, out: seen.__setitem__("x", out[0] if isinstance(out, tuple) else out)
            )
            with torch.no_grad():
                reference(torch.tensor([ids]))
            handle.remove()
            expected.append(seen["x"][0])
            expected_tokens += [(index, position, token) for position, token in enumerate(ids)]
        torch.testing.assert_close(stored.float(), torch.cat(expected), atol=2e-2, rtol=2e-2)
        assert tokens.tolist() == [list(t) for t in expected_tokens]
        assert abs(hook["mean_norm"] - torch.cat(expected).norm(dim=-1).mean().item()) < 1e-2

    # In use: neither the model nor the dataset can go while the set exists; then both can.
    with app.client() as client:
        refused = assert_error(client.delete(f"/api/models/{model['id']}"), 409, "CONFLICT")
        assert refused["details"]["used_by"] == [act["id"]]
        assert 'is used by 1 activation set ("L0-1 residual + mlp + attention")' in refused["message"]
        assert_error(client.delete(f"/api/datasets/{dataset_id}"), 409, "CONFLICT")
        assert client.delete(f"/api/activations/{act['id']}").status_code == 200
        assert not folder.exists()
        assert client.delete(f"/api/datasets/{dataset_id}").status_code == 200


def test_models_and_activation_sets_say_which_actions_their_state_allows(app: Appliance) -> None:
    """The UI shows the buttons the API lists, so each state's list is the API's own rule."""
    from appliance.services.activations import activation_set_actions
    from appliance.services.models import model_actions

    assert model_actions("downloading") == model_actions("quantizing") == ["cancel"]
    assert model_actions("error") == ["delete"]
    assert activation_set_actions("extracting") == ["cancel"]
    assert activation_set_actions("ready") == activation_set_actions("error") == ["delete"]
    _, model = download(app, repo_id="acme/tiny-gpt2")
    assert model["actions"] == ["architecture", "extract", "delete"]
    assert (
        next(m for m in app.get("/api/models").json()["data"] if m["id"] == model["id"])["actions"] == model["actions"]
    )
    job, act = _extract(
        app,
        model["id"],
        dataset_id=_dataset(app, "actions.jsonl", TEXTS[:4]),
        layers=[0],
        max_samples=4,
        context_length=12,
    )
    assert job["status"] == "completed" and act["actions"] == ["delete"], job["error"]
    assert app.client().delete(f"/api/activations/{act['id']}").status_code == 200


def test_shard_writer_splits_batches_across_full_shards(tmp_path) -> None:
    import torch
    from safetensors.torch import load_file

    from appliance.pipeline.activations.extract import ShardWriter

    writer = ShardWriter(tmp_path, ["a", "b"], shard_tokens=100, d_model=8)
    sent_a, sent_b, sent_tokens = [], [], []
    for rows in (30, 250, 20, 7):  # one batch spans three shards; the last shard is partial
        a, b = torch.randn(rows, 8).half(), torch.randn(rows, 8).half()
        tokens = torch.randint(0, 1000, (rows, 3))
        writer.add({"a": a, "b": b}, tokens)
        sent_a.append(a), sent_b.append(b), sent_tokens.append(tokens)
    writer.flush()
    assert [s["tokens"] for s in writer.shards] == [100, 100, 100, 7]
    for name, sent in (("a", sent_a), ("b", sent_b)):
        stored = torch.cat(
            [load_file(str(tmp_path / f"{name}_{s['index']:04d}.safetensors"))["activations"] for s in writer.shards]
        )
        assert torch.equal(stored, torch.cat(sent))
    stored = torch.cat(
        [load_file(str(tmp_path / f"tokens_{s['index']:04d}.safetensors"))["tokens"] for s in writer.shards]
    )
    assert torch.equal(stored, torch.cat(sent_tokens))


def test_bad_extraction_requests(app: Appliance) -> None:
    _, model = download(app, repo_id="acme/tiny-gpt2")
    dataset_id = _dataset(app, "bad.jsonl", TEXTS)
    url = f"/api/models/{model['id']}/extract-activations"
    assert_error(app.post(url, json={"dataset_id": dataset_id, "layers": [2]}), 400, "VALIDATION_ERROR")
    assert_error(app.post(url, json={"dataset_id": dataset_id, "layers": []}), 400, "VALIDATION_ERROR")
    assert_error(
        app.post(url, json={"dataset_id": dataset_id, "layers": [0], "hook_types": ["x"]}), 400, "VALIDATION_ERROR"
    )
    assert_error(
        app.post(url, json={"dataset_id": dataset_id, "layers": [0], "context_length": 999}), 400, "VALIDATION_ERROR"
    )
    assert_error(app.post(url, json={"dataset_id": "ds_missing0000", "layers": [0]}), 404, "NOT_FOUND")
    assert_error(
        app.post("/api/models/m_missing0000/extract-activations", json={"dataset_id": dataset_id, "layers": [0]}),
        404,
        "NOT_FOUND",
    )


def test_extraction_memory_stays_flat_as_the_dataset_grows(app: Appliance) -> None:
    """Ten times the samples, the same memory: batches stream through fixed shard buffers to disk.
    The allowance is a third of what keeping the larger run's extra activations (fp16, as written)
    would cost, and that cost is made large (8 hooks, 64-token samples: 281 MB), so an extractor
    that kept them, or any copy of them, exceeds it three times over (measured: 517 -> 547 MB, the
    growth being mostly the larger dataset's mapped pages)."""
    _, model = download(app, repo_id="acme/tiny-gpt2")
    texts = [" ".join([f"sample {i} about sockets and files"] * 12) for i in range(10_000)]  # > 64 tokens each
    dataset_id = _dataset(app, "big.jsonl", texts)
    hook_types = ["residual", "mlp_in", "mlp", "attention"]
    body = {
        "dataset_id": dataset_id,
        "layers": [0, 1],
        "hook_types": hook_types,
        "batch_size": 32,
        "context_length": 64,
        "exclude_special_tokens": False,  # every sample then stores exactly its 64 tokens
    }
    _extract(app, model["id"], **body, max_samples=200)  # warm-up: libraries and allocator settle
    peaks, tokens = {}, {}
    for samples in (1000, 10_000):
        job, act = _extract(app, model["id"], **body, max_samples=samples)
        assert job["status"] == "completed" and act["manifest"]["samples"] == samples, job["error"]
        assert act["manifest"]["tokens"] == samples * 64  # every sample fills the context
        assert len(act["manifest"]["shards"]) > 1  # the shard buffers fill and are reused in both runs
        peaks[samples], tokens[samples] = job["result"]["peak_rss_mb"], act["manifest"]["tokens"]
        assert app.client().delete(f"/api/activations/{act['id']}").status_code == 200
    kept_mb = (tokens[10_000] - tokens[1000]) * 2 * len(hook_types) * 32 * 2 / 2**20  # 2 layers, d_model 32
    assert kept_mb > 250, kept_mb
    assert peaks[10_000] - peaks[1000] < kept_mb / 3, (peaks, kept_mb)


def test_a_template_applied_to_a_model_keeps_only_its_layers(app: Appliance) -> None:
    _, model = download(app, repo_id="acme/tiny-gpt2")
    full = [t for t in app.get("/api/templates/extraction").json()["data"] if t["name"] == "Full Analysis"][0]
    applied = app.post(f"/api/templates/extraction/{full['id']}/apply", json={"model_id": model["id"]}).json()["data"]
    assert applied["config"]["layers"] == [0, 1]  # every layer of this one
    assert applied["notes"] == ["Context length 128 is longer than this model reads: 64 is used"]
    assert applied["config"]["hook_types"] == ["residual", "mlp", "attention"]


def test_import_a_model_folder_and_use_its_tokenizer(app: Appliance, tmp_path) -> None:
    import shutil

    folder = app.data_dir / "imports" / "my-model"
    files = tiny_gpt2_files(tmp_path / "local")
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        if "/" not in name:
            (folder / name).write_bytes(data)
    response = app.post("/api/models/import", json={"path": "my-model", "precision": "bf16"})
    assert response.status_code == 202, response.text
    job = app.wait_status(response.json()["data"]["job_id"], "completed", "failed", timeout=120)
    model = app.get(f"/api/models/{job['target']['id']}").json()["data"]
    assert job["status"] == "completed" and model["source"] == "local" and model["name"] == "my-model"
    assert model["precision"] == "bf16" and model["layers"] == 2 and folder.is_dir()  # the source stays
    tokenizers = {t["id"]: t for t in app.get("/api/tokenizers").json()["data"]}
    assert tokenizers[model["id"]]["source"] == "model" and tokenizers[model["id"]]["vocab_size"] == 4096
    preview = app.post("/api/tokenize/preview", json={"text": "socket", "tokenizer": model["id"]}).json()["data"]
    assert preview["count"] >= 1
    for body in ({"path": "../.."}, {"path": "nothing-here"}, {"path": "my-model", "precision": "q4"}):
        assert_error(app.post("/api/models/import", json=body), 400, "VALIDATION_ERROR")
    (folder / "model.safetensors").unlink()
    assert_error(app.post("/api/models/import", json={"path": "my-model"}), 400, "VALIDATION_ERROR")
    shutil.rmtree(folder)


def test_a_cancelled_extraction_leaves_no_files(app: Appliance) -> None:
    _, model = download(app, repo_id="acme/tiny-gpt2")
    dataset_id = _dataset(app, "cancel.jsonl", [f"text {i} about cancelling a long job" for i in range(20_000)])
    response = app.post(
        f"/api/models/{model['id']}/extract-activations",
        json={"dataset_id": dataset_id, "layers": [0, 1], "batch_size": 1, "max_samples": 20_000, "context_length": 16},
    )
    job_id = response.json()["data"]["job_id"]
    from tests.support import wait_until

    wait_until(
        lambda: app.get(f"/api/jobs/{job_id}").json()["data"]["progress"] > 0.05,
        timeout=60,
        what="the extraction to be under way",
    )
    assert app.post(f"/api/jobs/{job_id}/cancel").status_code == 200
    job = app.wait_status(job_id, "cancelled", "completed", "failed", timeout=60)
    assert job["status"] == "cancelled"
    # A cancelled set is no resource: its row goes with the job's end, its files right after.
    activation_id = job["target"]["id"]
    assert app.get(f"/api/activations/{activation_id}").status_code == 404
    folder = app.data_dir / "activations"
    # The partial files go right after the job's final state commits (never before: a failed COMMIT
    # must not leave a row whose files are gone), so the answer can come a moment before they do.
    wait_until(lambda: not list(folder.glob(f"{activation_id}*")), timeout=30, what="the partial files to go")
