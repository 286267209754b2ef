"""Cancel, pause and stop are honoured inside a forward pass, in every loop that runs a model.

How it is shown without timing anything: the model is a deep, narrow random GPT-2 (64 blocks) that
runs fast on the few tokens of its registration and for seconds on a 512-1,024-token sample. Each
test waits until the job is inside such a forward pass (its progress says one unit of work is done, or
what it starts next) and asks for the control; the worker relays it within ~0.1 s. Then it counts the
units of work the job recorded (samples, training steps, generated tokens, labels, results): none
may be added after the control. A loop that checked only between its units would finish the pass in
flight and record one more, however deep the model or large the buffer; a check before every block
gives up the pass after at most one block. The job ends cancelled (or paused) and its resource in its
final state.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.peer_kit import zipped
from tests.support import Appliance, appliance_at, started, wait_until

LAYERS, WIDTH = 64, 128
LAYER = LAYERS - 1  # the deepest block: every forward pass runs all of them
WORDS = "the river stone carried light over quiet fields where small birds sang of distant rain".split()


def _model_folder(folder: Path) -> None:
    """A random GPT-2 (64 x 128, 1,024 positions) with the demo tokenizer."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    from appliance.demo_kit import TOKENIZER_FILE

    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=4096, n_embd=WIDTH, n_layer=LAYERS, n_head=4, n_positions=1024, bos_token_id=0, eos_token_id=0
    )
    GPT2LMHeadModel(config).save_pretrained(folder)
    PreTrainedTokenizerFast(tokenizer_file=str(TOKENIZER_FILE), eos_token="<|endoftext|>").save_pretrained(folder)


def _sae_folder(folder: Path) -> None:
    """A random sparse SAE (32 latents, about half firing) on block LAYER's residual stream."""
    import torch

    from appliance.contracts.hyperparameters import Hyperparameters
    from appliance.pipeline.sae import build, sae_config
    from appliance.pipeline.sae.io.saelens import export

    torch.manual_seed(1)
    sae = build(sae_config("sparse", WIDTH, Hyperparameters(d_sae=32)))
    with torch.no_grad():
        sae.W_enc.copy_(torch.randn(WIDTH, 32) / WIDTH**0.5)
        sae.W_dec.copy_(torch.randn(32, WIDTH) / WIDTH**0.5)
        sae.b_enc.zero_()
        sae.b_dec.zero_()
    export(sae, folder, {"hook_name": f"blocks.{LAYER}.hook_resid_post"})


def _text(seed: int, words: int = 1400) -> str:
    return " ".join(WORDS[(seed * 7 + i * i) % len(WORDS)] for i in range(words))


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Appliance]:
    # One-block shuffle buffers (two samples): a streamed training runs the model between its steps.
    yield from started(appliance_at(tmp_path_factory.mktemp("cancel"), {"MISTUDIO_STREAM_BUFFER_TOKENS": "1024"}))


def _job(app: Appliance, response: Any) -> str:
    assert response.status_code == 202, response.text
    return response.json()["data"]["job_id"]


@pytest.fixture(scope="module")
def kit(app: Appliance, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The slow model, a dataset of long texts, and two imported SAEs on the model: ``probed`` with its
    features extracted (what probes, labels and steering need), ``fresh`` without."""
    imports = app.data_dir / "imports"
    _model_folder(imports / "slow")
    (imports / "long.jsonl").write_text("".join(json.dumps({"text": _text(i)}) + "\n" for i in range(12)))
    model_job = app.wait_status(
        _job(app, app.post("/api/models/import", json={"path": "slow"})), "completed", timeout=180
    )
    dataset_job = app.wait_status(
        _job(app, app.post("/api/datasets/import", json={"path": "long.jsonl"})), "completed", timeout=180
    )
    model_id, dataset_id = model_job["target"]["id"], dataset_job["target"]["id"]
    folder = tmp_path_factory.mktemp("sae") / "sae"
    _sae_folder(folder)
    saes = []
    for _ in range(2):
        response = app.post(
            "/api/training/import/upload", files={"file": ("sae.zip", zipped(folder))}, data={"model_id": model_id}
        )
        saes.append(app.wait_status(_job(app, response), "completed", timeout=120)["target"]["id"])
    body = {"training_id": saes[0], "dataset_id": dataset_id, "eval_samples": 8, "context_length": 512}
    app.wait_status(_job(app, app.post("/api/features/extract", json=body)), "completed", timeout=300)
    return {"model": model_id, "dataset": dataset_id, "probed": saes[0], "fresh": saes[1]}


def _events(app: Appliance, job_id: str, type_: str) -> list[dict[str, Any]]:
    events = app.get(f"/api/jobs/{job_id}/events", params={"format": "json"}).json()["data"]
    return [e["data"] for e in events if e["type"] == type_]


def _cancel(app: Appliance, job_id: str) -> dict[str, Any]:
    assert app.post(f"/api/jobs/{job_id}/cancel").status_code == 200
    return app.wait_status(job_id, "cancelled", "completed", "failed", timeout=120)


def _message(app: Appliance, job_id: str, text: str) -> None:
    """Wait until the running job says ``text``."""

    def said() -> dict[str, Any] | None:
        job = app.job(job_id)
        return job if job["status"] not in ("queued", "running") or text in (job["message"] or "") else None

    job = wait_until(said, timeout=120, what=f"{text!r} in the job's message")
    assert job["status"] == "running", job


def test_extraction_gives_up_the_batch_in_flight(app: Appliance, kit: dict[str, str]) -> None:
    body = {"dataset_id": kit["dataset"], "layers": [LAYER], "batch_size": 1, "max_samples": 3, "context_length": 1024}
    job_id = _job(app, app.post(f"/api/models/{kit['model']}/extract-activations", json=body))
    _message(app, job_id, "1 of 3 samples")  # the second sample's forward pass is under way
    job = _cancel(app, job_id)
    assert job["status"] == "cancelled"
    assert max(e["samples"] for e in _events(app, job_id, "activations.progress") if "samples" in e) == 1
    activation_id = job["target"]["id"]
    assert app.get(f"/api/activations/{activation_id}").status_code == 404  # a cancelled set leaves nothing
    assert not (app.data_dir / "activations" / f"{activation_id}.partial").exists()


def test_a_streamed_training_pauses_inside_a_block_and_checkpoints_its_last_step(
    app: Appliance, kit: dict[str, str]
) -> None:
    """Each one-step block is two samples through the model: the pause lands in the next block's
    forward pass and the checkpoint holds the steps done before it."""
    body = {
        "model_id": kit["model"],
        "dataset_id": kit["dataset"],
        "layer": LAYER,
        "encoder_type": "sparse",
        "seed": 1,
        "max_samples": 12,
        "context_length": 512,
        "auto_save_interval": 0,
        "hyperparameters": {
            "expansion_factor": 1,
            "batch_size": 1024,
            "total_steps": 100,
            "log_every": 1,
            "normalize_activations": "none",
        },
    }
    job_id = _job(app, app.post("/api/training/start", json=body))
    tid = app.job(job_id)["target"]["id"]
    seen = wait_until(lambda: app.get(f"/api/training/{tid}").json()["data"]["step"], timeout=180, what="a step")
    assert app.post(f"/api/training/{tid}/pause").status_code == 200
    assert app.wait_status(job_id, "paused", "completed", "failed", timeout=120)["status"] == "paused"
    training = app.get(f"/api/training/{tid}").json()["data"]
    checkpoints = app.get(f"/api/training/{tid}/checkpoints").json()["data"]
    assert training["status"] == "paused" and training["step"] == seen
    assert [(c["step"], c["kind"]) for c in checkpoints] == [(seen, "pause")]
    assert _cancel(app, job_id)["status"] == "cancelled"
    assert app.get(f"/api/training/{tid}").json()["data"]["status"] == "cancelled"


def test_the_feature_pass_gives_up_the_batch_in_flight(app: Appliance, kit: dict[str, str]) -> None:
    body = {"training_id": kit["fresh"], "dataset_id": kit["dataset"], "eval_samples": 16, "context_length": 512}
    job_id = _job(app, app.post("/api/features/extract", json=body))
    _message(app, job_id, "8 of 12 samples")  # the dataset's last 4 samples (x 512 tokens) are under way
    assert _cancel(app, job_id)["status"] == "cancelled"
    assert max(e["samples"] for e in _events(app, job_id, "features.progress") if "samples" in e) == 8
    summary = app.get(f"/api/training/{kit['fresh']}/features/summary").json()["data"]
    assert summary["status"] == "error"
    assert not (app.data_dir / "trainings" / kit["fresh"] / "features.partial").exists()


def test_the_spliced_evaluation_gives_up_its_forward_passes(app: Appliance, kit: dict[str, str]) -> None:
    before = app.get(f"/api/training/{kit['fresh']}").json()["data"]["evaluation"]
    body = {"dataset_id": kit["dataset"], "samples": 2, "context_length": 1024}
    job_id = _job(app, app.post(f"/api/training/{kit['fresh']}/evaluate", json=body))
    _message(app, job_id, "Splicing")  # then three forward passes over 2 x 1,024 tokens
    assert _cancel(app, job_id)["status"] == "cancelled"
    after = app.get(f"/api/training/{kit['fresh']}").json()["data"]
    assert after["status"] == "completed" and after["evaluation"] == before


def _interactive(app: Appliance, kind: str, request: Any) -> tuple[str, dict[str, Any]]:
    """Start a request that waits on its job (``request()``) in a thread; (its job's id, the answer)
    once that job was cancelled as soon as it ran."""
    answer: dict[str, Any] = {}
    known = {j["id"] for j in app.get("/api/jobs").json()["data"]}
    thread = threading.Thread(target=lambda: answer.update(response=request()), daemon=True)
    thread.start()
    job_id = wait_until(
        lambda: next(
            (j["id"] for j in app.get("/api/jobs").json()["data"] if j["kind"] == kind and j["id"] not in known), None
        ),
        timeout=30,
        what=f"the {kind} job",
    )
    wait_until(lambda: app.job(job_id)["status"] != "queued", timeout=60, what=f"the {kind} job to run")
    assert _cancel(app, job_id)["status"] == "cancelled"
    thread.join(timeout=60)
    return job_id, answer["response"].json()


def test_an_ablation_gives_up_its_forward_passes(app: Appliance, kit: dict[str, str]) -> None:
    tid = kit["probed"]
    feature = app.get(f"/api/training/{tid}/features", params={"sort_by": "frequency"}).json()["data"][0]["index"]
    # A probe on a few tokens first: the model is then cached, and the ablation's job is in its forward
    # passes from its first milliseconds on.
    assert app.post(f"/api/training/{tid}/features/{feature}/activations-on", json={"text": "a b"}).status_code == 200
    _, answer = _interactive(
        app, "features.ablation", lambda: app.post(f"/api/training/{tid}/features/{feature}/ablation?contexts=1")
    )
    assert answer["error"]["code"] == "CANCELLED"
    assert app.get(f"/api/training/{tid}/features/{feature}").json()["data"]["ablation"] is None


def test_steering_gives_up_the_prompt_pass(app: Appliance, kit: dict[str, str]) -> None:
    body = {
        "training_id": kit["probed"],
        "prompt": _text(99, 1000),
        "features": [{"index": 0, "coefficient": 2.0}],
        "max_tokens": 4,
        "stream": True,
    }
    job_id = _job(app, app.post("/api/steering/generate", json=body))
    _message(app, job_id, "Generating")  # the unsteered side's pass over the ~1,000-token prompt
    assert _cancel(app, job_id)["status"] == "cancelled"
    assert _events(app, job_id, "steering.token") == []
    assert _events(app, job_id, "steering.completed") == []


def test_local_explaining_gives_up_the_explanation_in_flight(app: Appliance, kit: dict[str, str]) -> None:
    tid = kit["probed"]
    assert app.client().put("/api/settings/labeling", json={"provider": "local", "examples": 20}).status_code == 200
    job_id = _job(app, app.post(f"/api/training/{tid}/features/explain", json={"top": 8}))
    wait_until(lambda: app.job(job_id)["status"] != "queued", timeout=60, what="the explaining job to run")
    assert _cancel(app, job_id)["status"] == "cancelled"
    rows = app.get(f"/api/training/{tid}/features", params={"limit": 100}).json()["data"]
    assert [row["label"] for row in rows] == [row["auto_label"] for row in rows]  # no label from the model
