"""Memory plans that match what loading a model really takes, and model imports admitted like every other
job that loads a model (issue: real models on an 8 GB board)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support import Appliance, demo_kit
from tests.test_api_contract import assert_error

MB = 2**20
# A GPT-2-small-shaped model (12 x 768) with the demo tokenizer's vocabulary: 89 M parameters, 170 MB in fp16,
# large enough that a copy of its checkpoint (what a converting load used to keep resident) shows in the peak.
SHAPE = {"n_layer": 12, "n_embd": 768, "n_head": 12, "n_positions": 256, "vocab_size": 4096}


def fp16_model(folder: Path, **shape: int) -> Path:
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    GPT2LMHeadModel(GPT2Config(**shape)).half().save_pretrained(folder)
    return folder


def imported(app: Appliance, name: str, precision: str) -> dict:
    response = app.post("/api/models/import", json={"path": name, "precision": precision})
    assert response.status_code == 202, response.text
    job = app.wait_status(response.json()["data"]["job_id"], "completed", "failed", timeout=240)
    assert job["status"] == "completed", job
    return job


def test_the_plan_covers_a_model_load_and_is_shown_on_the_job(make_appliance) -> None:
    """An fp16 checkpoint imported as bf16 (converted while it loads) and as fp16 (memory-mapped), on a
    simulated 8 GB board: each job shows its plan and the worker's measured peak, and the plan holds the
    peak without exceeding it by more than 30%.

    Tolerance: the plan is what the worker held when admitted plus the weights and the loader's
    transient (its largest tensors in flight, appliance.memory.checkpoint), so it must be at least the
    peak; at most 1.3 x the peak is the issue's goal for every stage. The peak is sampled every 20 ms,
    and the conversion holds the converted weights to the end of the load, so the sample sees them."""
    app = make_appliance({"MISTUDIO_MEMORY_TOTAL_MB": "8192"})
    fp16_model(app.data_dir / "imports" / "gpt2s", **SHAPE)
    app.start_api()
    app.start_worker()
    # The first load imports torch and transformers (planned as "libraries"); the next ones are the loads alone.
    for precision in ("fp16", "bf16", "fp16"):
        job = imported(app, "gpt2s", precision)
        planned, peak = job["memory_planned_mb"], job["memory_peak_mb"]
        assert planned is not None and peak is not None, job
        assert peak <= planned <= 1.3 * peak, (precision, planned, peak)


def test_a_model_import_that_can_never_fit_is_refused(make_appliance, tmp_path: Path) -> None:
    """Importing is admitted: a model whose load cannot fit the budget is refused when it is asked for,
    with advice that fits a model already in half precision (no "fp16/bf16 instead of fp32")."""
    app = make_appliance({"MISTUDIO_MEMORY_TOTAL_MB": "32"})  # a 27 MB budget: the 34 MB fp16 weights never fit
    fp16_model(app.data_dir / "imports" / "gpt2s", **{**SHAPE, "n_layer": 2})
    app.start_api()
    for precision in ("bf16", "fp32"):
        response = app.post("/api/models/import", json={"path": "gpt2s", "precision": precision})
        error = assert_error(response, 503, "INSUFFICIENT_MEMORY")
        assert "model weights" in "".join(error["details"]["parts_mb"]), error
        assert ("instead of fp32" in error["message"]) == (precision == "fp32"), error["message"]


def test_estimates_count_what_loading_costs(tmp_path: Path) -> None:
    """The worker's and the API's estimate of a load, read from the checkpoint's header: a conversion adds the
    loader's tensors in flight; a load at the stored precision (memory-mapped) adds nothing."""
    import torch
    from safetensors.torch import save_file

    from appliance.memory.admission import LOAD_SLACK_BYTES, estimate_model
    from appliance.memory.estimates import minimum

    tensors = {f"w{i}": torch.zeros(100 * (i + 1), 10, dtype=torch.float16) for i in range(6)}
    save_file(tensors, str(tmp_path / "model.safetensors"))
    values = sum(t.numel() for t in tensors.values())
    same = estimate_model(0, "fp16", checkpoint=tmp_path)
    assert same.parts == {"model weights (fp16)": values * 2}
    converted = estimate_model(0, "bf16", checkpoint=tmp_path)
    in_flight = (600 + 500 + 400 + 300) * 10 * 2  # the four largest tensors, as stored
    assert converted.parts == {"model weights (bf16)": values * 2, "model loading": in_flight + LOAD_SLACK_BYTES}
    assert estimate_model(0, "fp32", checkpoint=tmp_path).parts["model weights (fp32)"] == values * 4
    assert minimum("model.import", {"source": str(tmp_path), "path": "x", "precision": "bf16"}) == converted
    assert minimum("activations.extract", {"model_path": str(tmp_path), "parameters": 1, "precision": "bf16"}) == (
        converted
    )


@pytest.mark.parametrize(
    ("parts", "says", "does_not_say"),
    [
        ({"model weights (bf16)": 9000 * MB}, "a smaller model", "instead of fp32"),
        ({"model weights (fp32)": 9000 * MB}, "fp16/bf16 instead of fp32", "batch"),
        ({"model weights (fp16)": 1000 * MB, "batch": 8000 * MB}, "SAE batch size or d_sae", "fewer samples"),
    ],
)
def test_refusals_say_what_does_not_fit(parts: dict[str, int], says: str, does_not_say: str) -> None:
    from appliance.errors import InsufficientMemory
    from appliance.memory.admission import Estimate, MemoryManager

    board = MemoryManager(physical_bytes=8192 * MB, fraction=0.85, available=lambda: 64 * 1024 * MB)
    with pytest.raises(InsufficientMemory) as refused:
        board.check_budget(Estimate(parts))
    assert says in refused.value.message and does_not_say not in refused.value.message


def test_a_job_records_its_peak_beside_its_plan(make_appliance) -> None:
    """Any admitted job: the plan is on the job while it runs, the peak once it ends."""
    app = make_appliance()
    app.start_api()
    app.start_worker()
    job_id = app.selftest(steps=2, memory_mb=64)
    job = app.wait_status(job_id, "completed", timeout=60)
    assert job["memory_planned_mb"] >= 64 and job["memory_peak_mb"] > 0


def test_a_training_and_its_feature_pass_are_planned_for_their_peaks(make_appliance) -> None:
    """A streamed training (its spliced evaluation loads the model again) and the feature pass of its SAE (the
    pass, then the map): each plan holds the job's measured peak without exceeding it by more than 30%.

    Tolerance: each job is planned for its largest phase (the steps or the spliced evaluation; the pass or the
    map), each phase's parts counted from their sizes, so the plan must be at least the peak; the issue's goal
    is at most 1.3 x. The model is large enough (4 x 512, a 4,096-token vocabulary) that its second load and the
    evaluation's logits, which plans used to leave out, show in the peak."""
    from appliance.commands.bench.pipeline import Plan, build_model

    app = make_appliance({"MISTUDIO_MEMORY_TOTAL_MB": "8192", "MISTUDIO_SEED_DEMO": "1"})
    build_model(app.data_dir / "imports" / "gpt2s", Plan(layers=4, width=512))  # with the demo tokenizer
    app.start_api()
    app.start_worker()
    model = imported(app, "gpt2s", "fp32")["target"]["id"]
    _, dataset = demo_kit(app)
    body = {
        "model_id": model,
        "dataset_id": dataset["id"],
        "layer": 2,
        "encoder_type": "topk",
        "max_samples": 64,
        "context_length": 64,
        "auto_save_interval": 0,
        "hyperparameters": {"d_sae": 2048, "k": 16, "batch_size": 256, "total_steps": 8, "log_every": 4},
    }
    trained = app.completed(app.post("/api/training/start", json=body), timeout=300)
    body = {"training_id": trained["target"]["id"], "context_length": 64, "eval_samples": 32}
    features = app.completed(app.post("/api/features/extract", json=body), timeout=300)
    for job in (trained, features):
        planned, peak = job["memory_planned_mb"], job["memory_peak_mb"]
        assert planned is not None and peak is not None, job
        assert peak <= planned <= 1.3 * peak, (job["kind"], planned, peak)
