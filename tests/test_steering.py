"""Steering on a demo-model SAE through a real appliance: the same text with no intervention, a
strong 'add' raising the probability of the token its feature promotes, every cached position
steered, 'ablate' silencing the feature, metrics against direct computations, streaming over SSE,
service while a training runs, presets (CRUD, apply, export/import, seeds, cascade) and errors."""

from __future__ import annotations

import math
import re
from collections.abc import Iterator

import pytest
import torch

from tests.support import Appliance, SSEReader, demo_kit, demo_sae, job_finished, started_demo, wait_until
from tests.test_api_contract import assert_error

LAYER = 2
PROMPT = "Return the number of"


@pytest.fixture(scope="module")
def app(tmp_path_factory) -> Iterator[Appliance]:
    yield from started_demo(tmp_path_factory, "steering", HF_HUB_OFFLINE="1")


@pytest.fixture(scope="module")
def sae(app: Appliance) -> dict:
    """A sparse SAE on the demo model's layer 2, its features extracted."""
    extraction = {"eval_samples": 80, "top_k_examples": 5}
    hp = {"total_steps": 150, "l1_coefficient": 2.0, "log_every": 50}
    trained, _ = demo_sae(app, LAYER, "sparse", max_samples=300, seed=3, extraction=extraction, **hp)
    training_id = trained["target"]["id"]
    model, dataset = demo_kit(app)
    features = app.get(f"/api/training/{training_id}/features", params={"sort_by": "frequency", "limit": 20}).json()
    return {"training_id": training_id, "model": model, "dataset": dataset, "features": features["data"]}


@pytest.fixture(scope="module")
def local(app: Appliance, sae: dict) -> dict:
    """The demo model and the exported SAE in this process, for direct computations."""
    from appliance.contracts.tokenization import load_tokenizer
    from appliance.demo_kit import MODEL_DIR
    from appliance.pipeline.models.architecture import hook_points
    from appliance.pipeline.models.loading import load
    from appliance.pipeline.sae.io.saelens import load_folder

    model = load(str(MODEL_DIR), sae["model"]["precision"], on="cpu")
    point = next(p for p in hook_points(model) if p["layer"] == LAYER and p["type"] == "residual")
    encoder, _ = load_folder(app.data_dir / "trainings" / sae["training_id"] / "export")
    return {
        "model": model,
        "sae": encoder,
        "module": dict(model.named_modules())[point["module"]],
        "tokenizer": load_tokenizer("demo", app.data_dir),
    }


def _generate(app: Appliance, sae: dict, **body) -> dict:
    response = app.post(
        "/api/steering/generate",
        json={"training_id": sae["training_id"], "prompt": PROMPT, "max_tokens": 24, **body},
        timeout=300,
    )
    assert response.status_code == 200, response.text
    return response.json()["data"]


def _adding(local: dict, vector: torch.Tensor):
    """A plain forward hook adding ``vector`` to the block's output: the reference for 'add'."""

    def hook(_module, _args, output):
        return (output[0] + vector, *output[1:]) if isinstance(output, tuple) else output + vector

    return local["module"].register_forward_hook(hook)


def _strength(app: Appliance, sae: dict, index: int) -> float:
    return app.get(f"/api/training/{sae['training_id']}/features/{index}").json()["data"]["max_activation"]


def test_no_intervention_gives_the_unsteered_text(app: Appliance, sae: dict) -> None:
    index = sae["features"][0]["index"]
    result = _generate(app, sae, features=[{"index": index, "coefficient": 0.0}], temperature=0.9, top_p=0.9, seed=11)
    assert result["seed"] == 11 and result["intervention_layer"] == LAYER
    assert result["hook_point"] == f"blocks.{LAYER}.hook_resid_post"
    assert result["unsteered"]["token_ids"] and result["unsteered"]["text"]
    assert result["steered"] == result["unsteered"]
    assert result["first_divergence"] is None
    metrics = result["metrics"]
    assert metrics["kl_divergence"] == 0.0 and metrics["perplexity_delta"] == 0.0
    assert metrics["word_overlap"] == 1.0 and metrics["semantic_similarity"] == pytest.approx(1.0, abs=1e-4)
    assert "".join(result["unsteered"]["tokens"]) == result["unsteered"]["text"]
    # The same seed gives the same text again (the model stays loaded: the second one is faster).
    again = _generate(app, sae, features=[{"index": index, "coefficient": 0.0}], temperature=0.9, top_p=0.9, seed=11)
    assert again["unsteered"]["text"] == result["unsteered"]["text"]


def test_add_raises_the_promoted_token_and_the_metrics_match(app: Appliance, sae: dict, local: dict) -> None:
    model, encoder = local["model"], local["sae"]
    index = sae["features"][0]["index"]
    direction = encoder.W_dec[index].detach() / encoder.W_dec[index].norm()
    promoted = int((model.get_output_embeddings().weight @ encoder.W_dec[index].detach()).argmax())
    strength = _strength(app, sae, index)
    coefficient = 4.0
    result = _generate(
        app,
        sae,
        features=[{"index": index, "coefficient": coefficient, "mode": "add"}],
        temperature=0.0,
        max_tokens=16,
        seed=5,
    )
    assert result["features"][0]["typical_max"] == pytest.approx(strength, rel=1e-3)
    assert result["features"][0]["value"] == pytest.approx(coefficient * strength, rel=1e-3)
    assert result["steering_vector_norm"] == pytest.approx(coefficient * strength, rel=1e-3)

    # Directly: the promoted token's probability after the prompt, without and with the vector.
    prompt = local["tokenizer"].encode(PROMPT).ids
    unsteered_ids = prompt + result["unsteered"]["token_ids"]
    with torch.no_grad():
        base = model(input_ids=torch.tensor([unsteered_ids])).logits[0].float()
        handle = _adding(local, coefficient * strength * direction)
        try:
            steered = model(input_ids=torch.tensor([unsteered_ids])).logits[0].float()
        finally:
            handle.remove()
    gen = slice(len(prompt) - 1, len(unsteered_ids) - 1)
    p, q = base[gen].softmax(-1), steered[gen].softmax(-1)
    assert q[:, promoted].mean() > 2 * p[:, promoted].mean()
    kl = float((p * (p.log() - q.log())).sum(-1).mean())
    metrics = result["metrics"]
    assert metrics["kl_divergence"] == pytest.approx(kl, rel=0.02, abs=1e-4)
    assert result["first_divergence"] is not None
    ce = torch.nn.functional.cross_entropy(base[gen], torch.tensor(result["unsteered"]["token_ids"]))
    assert metrics["perplexity_unsteered"] == pytest.approx(math.exp(float(ce)), rel=1e-3)
    wu, ws = (set(re.findall(r"\w+", result[s]["text"].lower())) for s in ("unsteered", "steered"))
    assert metrics["word_overlap"] == pytest.approx(len(wu & ws) / len(wu | ws), abs=1e-4)
    shifts = metrics["token_probability_shifts"]
    assert shifts and all(abs(s["delta"] - (s["steered_prob"] - s["baseline_prob"])) < 1e-5 for s in shifts)
    assert [abs(s["delta"]) for s in shifts] == sorted((abs(s["delta"]) for s in shifts), reverse=True)


def test_every_cached_position_is_steered(local: dict, sae: dict, app: Appliance) -> None:
    """Greedy steered generation with the KV cache equals, token by token, the argmax of a full
    steered forward pass without a cache: later tokens see the intervention at every position."""
    from appliance.pipeline.steering.generate import Intervention, SteeredFeature, generate

    model, encoder = local["model"], local["sae"]
    index = sae["features"][1]["index"]
    features = [SteeredFeature(index, 3.0, "add", _strength(app, sae, index))]
    intervention = Intervention(encoder, features, False, False, "cpu", torch.float32)
    handle = intervention.attach(local["module"])
    try:
        prompt = local["tokenizer"].encode(PROMPT).ids
        out = generate(
            model,
            intervention,
            prompt,
            sides=("steered",),
            temperature=0.0,
            top_p=1.0,
            max_tokens=20,
            seed=0,
            tokenizer=local["tokenizer"],
            eos=None,
        )
        tokens = out["sides"]["steered"]["token_ids"]
        assert len(tokens) == 20
        intervention.active = True
        with torch.no_grad():
            full = model(input_ids=torch.tensor([prompt + tokens]), use_cache=False).logits[0]
        intervention.active = False
        with torch.no_grad():
            plain = model(input_ids=torch.tensor([prompt + tokens]), use_cache=False).logits[0]
    finally:
        handle.remove()
    assert full[len(prompt) - 1 : -1].argmax(-1).tolist() == tokens
    # ...and the intervention matters at the last positions, not only at the prompt.
    assert (full[-5:] - plain[-5:]).abs().max() > 0.5


def test_ablate_silences_the_feature_where_it_fires(app: Appliance, sae: dict, local: dict) -> None:
    """On the feature's own top context: it fires there unsteered, reads 0 in the steered run, and
    the steered model is the model with ``x - z_i W_dec[i]`` at the SAE's layer (error term kept):
    the KL divergence matches that reference computed here."""
    encoder = local["sae"]
    index = sae["features"][0]["index"]
    detail = app.get(f"/api/training/{sae['training_id']}/features/{index}", params={"examples": 1}).json()["data"]
    prompt = "".join(detail["examples"][0]["tokens"])
    ablate = [{"index": index, "coefficient": 0.0, "mode": "ablate"}]
    result = _generate(app, sae, prompt=prompt, max_tokens=8, temperature=0.0, features=ablate)
    trace = result["feature_activations"][0]
    prompt_len = result["timing"]["prompt_tokens"]
    before, after = trace["unsteered"], trace["steered"]
    assert max(before[:prompt_len]) > 0.3 * detail["max_activation"]
    assert max(after) == 0.0 and result["features"][0]["value"] == 0.0

    def ablating(_module, _args, output):
        x = output[0] if isinstance(output, tuple) else output
        z = encoder.encode(x[0].float())[:, index]
        x = x - (z[:, None] * encoder.W_dec[index])[None].to(x.dtype)
        return (x, *output[1:]) if isinstance(output, tuple) else x

    ids = local["tokenizer"].encode(prompt).ids + result["unsteered"]["token_ids"]
    with torch.no_grad():
        base = local["model"](input_ids=torch.tensor([ids])).logits[0].float()
        handle = local["module"].register_forward_hook(ablating)
        try:
            ablated = local["model"](input_ids=torch.tensor([ids])).logits[0].float()
        finally:
            handle.remove()
    gen = slice(prompt_len - 1, len(ids) - 1)
    p, q = base[gen].log_softmax(-1), ablated[gen].log_softmax(-1)
    kl = float((p.exp() * (p - q)).sum(-1).mean())
    assert kl > 0 and result["metrics"]["kl_divergence"] == pytest.approx(kl, rel=0.02, abs=1e-5)


def test_clamp_sets_the_latent(app: Appliance, sae: dict) -> None:
    index = sae["features"][2]["index"]
    result = _generate(
        app, sae, features=[{"index": index, "coefficient": 2.0, "mode": "clamp"}], temperature=0.0, max_tokens=6
    )
    value = result["features"][0]["value"]
    assert value == pytest.approx(2.0 * _strength(app, sae, index), rel=1e-3)
    steered = result["feature_activations"][0]["steered"]
    assert all(v == pytest.approx(value, rel=0.1) for v in steered)


def test_streaming_sends_every_token_then_the_result(app: Appliance, sae: dict) -> None:
    index = sae["features"][0]["index"]
    response = app.post(
        "/api/steering/generate",
        json={
            "training_id": sae["training_id"],
            "prompt": PROMPT,
            "max_tokens": 20,
            "seed": 9,
            "stream": True,
            "features": [{"index": index, "coefficient": 3.0}],
        },
    )
    assert response.status_code == 202, response.text
    job_id = response.json()["data"]["job_id"]
    with SSEReader(f"{app.url}/api/events?topics=job:{job_id}", headers={"Last-Event-ID": "0"}) as reader:
        reader.wait_for(job_finished(job_id), timeout=120)
    events = [e["payload"] for e in reader.events]
    job = app.job(job_id)
    assert job["status"] == "completed", job["error"]
    result = job["result"]
    for side in ("unsteered", "steered"):
        tokens = sorted(
            (e["data"] for e in events if e["type"] == "steering.token" and e["data"]["side"] == side),
            key=lambda d: d["index"],
        )
        assert [t["index"] for t in tokens] == list(range(len(result[side]["token_ids"])))
        assert "".join(t["text"] for t in tokens) == result[side]["text"]
    completed = [e for e in events if e["type"] == "steering.completed"]
    assert len(completed) == 1 and completed[0]["data"]["result"] == result
    # Tokens came before the result, interleaved between the sides.
    kinds = [e["type"] for e in events if e["type"].startswith("steering.")]
    assert kinds[-1] == "steering.completed" and kinds.count("steering.token") >= 2


def test_timing_reports_each_side_and_the_overhead(app: Appliance, sae: dict) -> None:
    """The answer times each side on its own (the steering overhead is their ratio), and says the
    whole-run figure is per token drawn on both sides together."""
    index = sae["features"][0]["index"]
    result = _generate(app, sae, features=[{"index": index, "coefficient": 3.0}], seed=5)
    timing = result["timing"]
    unsteered, steered = timing["unsteered_ms_per_token"], timing["steered_ms_per_token"]
    assert unsteered > 0 and steered > 0
    assert timing["overhead_ratio"] == pytest.approx(steered / unsteered, rel=2e-3)
    drawn = {side: len(result[side]["token_ids"]) for side in ("unsteered", "steered")}
    # Each side's passes are part of the whole run, and the whole run's figure covers both sides' tokens.
    assert unsteered * drawn["unsteered"] + steered * drawn["steered"] <= timing["total_ms"] + 0.01
    assert timing["ms_per_token"] == pytest.approx(timing["total_ms"] / sum(drawn.values()), rel=1e-3)


def test_each_sides_time_is_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    """On a clock that only moves in the model's passes (2 ms each, 10 ms more for an intervention), the
    sides report 2 and 12 ms per token, not their mean; a side not generated reports None."""
    from appliance.contracts.tokenization import load_tokenizer
    from appliance.demo_kit import MODEL_DIR
    from appliance.pipeline.models.architecture import hook_points
    from appliance.pipeline.models.loading import load
    from appliance.pipeline.sae import build
    from appliance.pipeline.sae.base import SAEConfig
    from appliance.pipeline.steering import generate as steering

    class Clock:
        now = 0.0

        def perf_counter(self) -> float:
            return self.now

    clock = Clock()
    monkeypatch.setattr(steering, "time", clock)
    model = load(str(MODEL_DIR), "fp32", on="cpu")
    point = next(p for p in hook_points(model) if p["layer"] == LAYER and p["type"] == "residual")
    module = dict(model.named_modules())[point["module"]]
    d = model.config.n_embd
    sae, feature = build(SAEConfig("sparse", d, 2 * d)), steering.SteeredFeature(3, 1.0, "add", 1.0)
    intervention = steering.Intervention(sae, [feature], False, False, "cpu", torch.float32)

    def tick(*_: object) -> None:
        clock.now += 0.002 + (0.010 if intervention.active else 0.0)

    handles = [intervention.attach(module), model.register_forward_pre_hook(tick)]
    try:
        tokenizer = load_tokenizer("demo", MODEL_DIR)
        prompt = tokenizer.encode(PROMPT).ids
        common = {"temperature": 0.0, "top_p": 1.0, "max_tokens": 6, "seed": 0, "eos": None}
        both = steering.generate(model, intervention, prompt, tokenizer=tokenizer, **common)["timing"]
        alone = steering.generate(model, intervention, prompt, sides=("steered",), tokenizer=tokenizer, **common)
    finally:
        for handle in handles:
            handle.remove()
    assert (both["unsteered_ms_per_token"], both["steered_ms_per_token"]) == (2.0, 12.0)
    assert both["overhead_ratio"] == 6.0 and both["ms_per_token"] == 7.0 and both["total_ms"] == 6 * 14.0
    timing = alone["timing"]
    assert (timing["unsteered_ms_per_token"], timing["steered_ms_per_token"], timing["overhead_ratio"]) == (
        None,
        12.0,
        None,
    )


def test_served_while_a_training_runs(app: Appliance, sae: dict) -> None:
    response = app.post(
        "/api/training/start",
        json={
            "model_id": sae["model"]["id"],
            "dataset_id": sae["dataset"]["id"],
            "layer": 1,
            "encoder_type": "sparse",
            "max_samples": 200,
            "context_length": 64,
            "hyperparameters": {"expansion_factor": 4, "batch_size": 128, "total_steps": 100_000, "log_every": 50},
        },
    )
    training_job = response.json()["data"]["job_id"]
    try:
        wait_until(lambda: app.job(training_job)["status"] == "running", timeout=60, what="the training to run")
        result = _generate(
            app, sae, features=[{"index": sae["features"][0]["index"], "coefficient": 1.0}], max_tokens=8
        )
        assert result["steered"]["token_ids"]
        assert app.job(training_job)["status"] == "running"
    finally:
        app.post(f"/api/jobs/{training_job}/cancel")
        app.wait_status(training_job, "cancelled", "completed", "failed", "stopped", timeout=60)


def test_concurrent_requests_do_not_steer_each_other(app: Appliance, sae: dict) -> None:
    """The worker serves interactive jobs on two threads with one cached model: a request's hook
    must never act on another request's forward passes."""
    index = sae["features"][0]["index"]
    plain = {
        "training_id": sae["training_id"],
        "prompt": PROMPT,
        "max_tokens": 40,
        "temperature": 0.8,
        "seed": 21,
        "stream": True,
        "features": [{"index": index, "coefficient": 0.0}],
    }
    strong = {**plain, "seed": 22, "features": [{"index": index, "coefficient": 5.0}]}
    bodies = [strong, plain, strong, plain]
    jobs = [app.post("/api/steering/generate", json=body).json()["data"]["job_id"] for body in bodies]
    results = []
    for job_id in jobs:
        job = app.wait_status(job_id, "completed", "failed", timeout=180)
        assert job["status"] == "completed", job["error"]
        results.append(job["result"])
    for body, result in zip(bodies, results):
        if body is plain:
            assert result["steered"]["token_ids"] == result["unsteered"]["token_ids"]
        else:
            assert result["steered"]["token_ids"] != result["unsteered"]["token_ids"]
    assert results[0]["steered"] == results[2]["steered"] and results[1]["steered"] == results[3]["steered"]


def test_presets(app: Appliance, sae: dict) -> None:
    tid = sae["training_id"]
    listed = app.get("/api/steering/presets", params={"training_id": tid}).json()["data"]
    # Seeds exist only where features fit them: each seeded feature's logit lens promotes a seed word.
    for preset in listed:
        for feature in preset["config"]["features"]:
            lens = app.get(f"/api/training/{tid}/features/{feature['index']}/logit-lens").json()["data"]
            assert lens["positive"]
    config = {
        "training_id": tid,
        "features": [
            {"index": 1, "coefficient": 2.5, "mode": "add"},
            {"index": 100_000, "coefficient": -1.0, "mode": "clamp"},
        ],
        "intervention_layer": 3,
        "temperature": 0.5,
        "max_tokens": 40,
        "prompt": PROMPT,
    }
    response = app.post("/api/steering/presets", json={"name": "Mine", "description": "two", "config": config})
    assert response.status_code == 201, response.text
    preset = response.json()["data"]
    assert preset["id"].startswith("sp_") and preset["kind"] == "steering"
    ids = [p["id"] for p in app.get("/api/steering/presets", params={"training_id": tid}).json()["data"]]
    assert preset["id"] in ids
    assert preset["id"] not in [
        p["id"] for p in app.get("/api/steering/presets", params={"training_id": "tr_nothere1"}).json()["data"]
    ]
    assert app.post(f"/api/steering/presets/{preset['id']}/favorite").json()["data"]["is_favorite"] is True
    applied = app.post(f"/api/steering/presets/{preset['id']}/apply", json={}).json()["data"]
    assert [f["index"] for f in applied["config"]["features"]] == [1]
    assert applied["config"]["intervention_layer"] == 3  # a residual SAE may steer at another layer
    assert any("100000" in note for note in applied["notes"])
    exported = app.get("/api/steering/presets/export").json()["data"]
    response = app.post(
        "/api/steering/presets/import",
        json=[{k: p[k] for k in ("name", "description", "is_favorite", "config")} for p in exported],
    )
    assert response.status_code == 201 and len(response.json()["data"]) == len(exported)
    assert_error(
        app.post(
            "/api/steering/presets", json={"name": "bad", "config": {"training_id": tid, "features": [{"index": -1}]}}
        ),
        400,
        "VALIDATION_ERROR",
    )


def test_bad_requests(app: Appliance, sae: dict) -> None:
    tid = sae["training_id"]
    body = {"training_id": tid, "prompt": PROMPT}
    assert_error(app.post("/api/steering/generate", json={**body, "training_id": "tr_missing01"}), 404, "NOT_FOUND")
    assert_error(app.post("/api/steering/generate", json={**body, "prompt": ""}), 400, "VALIDATION_ERROR")
    assert_error(app.post("/api/steering/generate", json={**body, "temperature": 3}), 400, "VALIDATION_ERROR")
    assert_error(app.post("/api/steering/generate", json={**body, "features": [{"index": 10**6}]}), 404, "NOT_FOUND")
    assert_error(
        app.post("/api/steering/generate", json={**body, "features": [{"index": 1}, {"index": 1}]}),
        400,
        "VALIDATION_ERROR",
    )
    assert_error(
        app.post(
            "/api/steering/generate",
            json={**body, "features": [{"index": 1, "mode": "clamp"}], "intervention_layer": 0},
        ),
        400,
        "VALIDATION_ERROR",
    )
    assert_error(app.post("/api/steering/generate", json={**body, "intervention_layer": 99}), 400, "VALIDATION_ERROR")
    assert_error(
        app.post("/api/steering/generate", json={**body, "features": [{"index": 1, "mode": "boost"}]}),
        400,
        "VALIDATION_ERROR",
    )


def test_deleting_the_training_takes_its_presets(app: Appliance, sae: dict) -> None:
    tid = sae["training_id"]
    config = {"training_id": tid, "features": [{"index": 0, "coefficient": 1.0}]}
    preset = app.post("/api/steering/presets", json={"name": "Gone", "config": config}).json()["data"]
    assert app.client().delete(f"/api/training/{tid}").status_code == 200
    assert_error(app.get(f"/api/steering/presets/{preset['id']}"), 404, "NOT_FOUND")
    assert_error(app.post("/api/steering/generate", json={"training_id": tid, "prompt": PROMPT}), 404, "NOT_FOUND")
