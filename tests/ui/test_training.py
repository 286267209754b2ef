"""The Training tab in a real browser: configure and start a training on the demo model, watch live
charts, pause, resume, save and load a checkpoint, stop, see a run complete and download its export."""

from __future__ import annotations

from playwright.sync_api import expect

from tests.ui.conftest import screenshot


def _start(page, steps: int) -> None:
    form = page.get_by_test_id("training-form")
    form.get_by_test_id("train-dataset").select_option(label="Python stdlib docs (demo)")
    form.get_by_test_id("train-model").select_option(label="mistudio-demo-gpt (demo)")
    form.get_by_test_id("train-encoder").select_option("topk")
    expect(form.get_by_test_id("train-layer")).to_have_value("2")
    if not form.get_by_test_id("train-advanced").is_visible():
        form.get_by_test_id("train-advanced-toggle").click()
    form.get_by_test_id("train-steps").fill(str(steps))
    form.get_by_test_id("train-autosave").fill("0")
    form.get_by_test_id("train-start").click()


def test_train_watch_pause_resume_checkpoint_stop_and_export(demo_appliance, open_page) -> None:
    app, model, dataset = demo_appliance
    response = app.post(
        f"/api/models/{model['id']}/extract-activations",
        json={
            "dataset_id": dataset["id"],
            "layers": [2],
            "hook_types": ["residual"],
            "max_samples": 400,
            "context_length": 64,
        },
    )
    app.wait_status(response.json()["data"]["job_id"], "completed", timeout=300)

    page, _ = open_page(app.url, "/training")
    expect(page.get_by_test_id("tab-training")).to_contain_text("No training jobs yet")
    _start(page, 50_000)
    card = page.get_by_test_id("training-card").first
    expect(card).to_have_attribute("data-status", "running", timeout=60_000)
    card.get_by_test_id("toggle-metrics").click()
    expect(card.get_by_test_id("training-charts").locator("svg polyline").first).to_be_visible(timeout=30_000)
    expect(card.get_by_test_id("tile-loss")).not_to_contain_text("—", timeout=30_000)
    expect(card.get_by_test_id("training-logs")).to_contain_text("Step")
    screenshot(page, "training-running")

    card.get_by_test_id("toggle-checkpoints").click()
    card.get_by_test_id("checkpoint-save").click()
    expect(card.get_by_test_id("checkpoint-row")).to_have_count(1, timeout=30_000)
    card.get_by_test_id("training-pause").click()
    expect(card).to_have_attribute("data-status", "paused", timeout=30_000)
    expect(card.get_by_test_id("checkpoint-row")).to_have_count(2, timeout=30_000)  # pausing saves one too
    card.get_by_test_id("training-resume").click()
    expect(card).to_have_attribute("data-status", "running", timeout=30_000)
    card.get_by_test_id("training-stop").click()
    expect(card).to_have_attribute("data-status", "stopped", timeout=60_000)
    expect(card.get_by_test_id("training-export")).to_be_visible()
    # Load the first checkpoint: the run goes back there, paused.
    card.get_by_test_id("checkpoint-load").first.click()
    expect(card).to_have_attribute("data-status", "paused", timeout=30_000)
    expect(card.get_by_test_id("training-resume")).to_be_visible()
    screenshot(page, "training-paused-after-load")

    # A short run completes; its export downloads.
    _start(page, 300)
    done = page.get_by_test_id("training-card").first
    expect(done).to_have_attribute("data-status", "completed", timeout=120_000)
    expect(done.get_by_test_id("training-percent")).to_have_text("100.0%")
    expect(done.get_by_test_id("training-evaluation")).to_contain_text("CE loss recovered")
    expect(done.get_by_test_id("density-histogram")).to_be_visible()
    with page.expect_download() as download:
        done.get_by_test_id("training-export").click()
    assert download.value.suggested_filename.endswith("-saelens.zip")
    exported = download.value.path()
    screenshot(page, "training-completed")

    # Streamed from the model (no activation set), with AdamW and an exponential schedule.
    form = page.get_by_test_id("training-form")
    form.get_by_test_id("train-source-kind").select_option("streamed")
    form.get_by_test_id("train-samples").fill("200")
    form.locator("#hp-schedule").select_option("exponential")
    cards = page.get_by_test_id("training-card")
    _start(page, 100)
    expect(cards).to_have_count(3)
    streamed = cards.first
    expect(streamed).to_have_attribute("data-status", "completed", timeout=180_000)
    tid = streamed.get_attribute("data-training-id")
    training = app.get(f"/api/training/{tid}").json()["data"]
    assert training["activation_id"] is None and training["config"]["hyperparameters"]["lr_decay"] == "exponential"

    # Import the downloaded export back: a finished, imported SAE of the demo model.
    page.get_by_test_id("import-sae-toggle").click()
    page.get_by_test_id("import-file").set_input_files(exported)
    page.get_by_test_id("import-start").click()
    imported = page.locator('[data-testid="training-card"]', has_text="imported from upload").first
    expect(imported).to_have_attribute("data-status", "completed", timeout=60_000)
    expect(imported.get_by_test_id("training-evaluation")).to_contain_text("Imported SAE")
    screenshot(page, "training-imported")


def test_a_card_shows_the_width_the_sae_is_built_with(demo_appliance, open_page) -> None:
    """A run started with d_sae shows that many latents and d_sae / d_in as its factor; one started with an
    expansion factor shows the width that factor gives."""
    app, model, dataset = demo_appliance
    d_in = model["d_model"]
    body = {"model_id": model["id"], "dataset_id": dataset["id"], "layer": 2, "encoder_type": "topk", "max_samples": 50}
    for hp in ({"d_sae": 1000, "k": 8, "total_steps": 5}, {"expansion_factor": 4, "k": 8, "total_steps": 5}):
        assert app.post("/api/training/start", json={**body, "hyperparameters": hp}).status_code == 202
    page, _ = open_page(app.url, "/training")
    widths = page.get_by_test_id("training-width")
    expect(widths).to_have_count(2, timeout=10_000)
    # Newest first.
    expect(widths.nth(0)).to_contain_text(f"{4 * d_in:,} latents (4× d_in {d_in})")
    expect(widths.nth(1)).to_contain_text(f"1,000 latents ({1000 / d_in:g}× d_in {d_in})")


def test_the_form_takes_each_architectures_defaults_until_edited(ui_appliance, open_page) -> None:
    """The learning rate and L1 coefficient follow the Encoder Type (GET /api/training/defaults'
    by_encoder_type); a value the user typed stays when the architecture changes."""
    each = ui_appliance.get("/api/training/defaults").json()["data"]["by_encoder_type"]
    page, _ = open_page(ui_appliance.url, "/training")
    form = page.get_by_test_id("training-form")
    form.get_by_test_id("train-advanced-toggle").click()
    lr, l1 = form.get_by_test_id("train-lr"), form.get_by_test_id("train-l1")
    for kind in ("sparse", "skip", "transcoder"):
        form.get_by_test_id("train-encoder").select_option(kind)
        expect(l1).to_have_value(f"{each[kind]['l1_coefficient']:g}")
        expect(lr).to_have_value(f"{each[kind]['learning_rate']:g}")
    form.get_by_test_id("train-encoder").select_option("topk")
    expect(lr).to_have_value(f"{each['topk']['learning_rate']:g}")
    form.get_by_test_id("train-encoder").select_option("sparse")
    l1.fill("0.7")
    form.get_by_test_id("train-encoder").select_option("skip")
    expect(l1).to_have_value("0.7")
    expect(lr).to_have_value(f"{each['skip']['learning_rate']:g}")


def test_the_form_sets_the_new_architectures_groups_and_a_target_l0(demo_appliance, open_page) -> None:
    """BatchTopK's k is an average; Matryoshka takes its group widths; an architecture with a coefficient
    takes a target L0 that hides the coefficient; what the form sends is what the API records."""
    app, _, _ = demo_appliance
    page, _ = open_page(app.url, "/training")
    form = page.get_by_test_id("training-form")
    form.get_by_test_id("train-dataset").select_option(label="Python stdlib docs (demo)")
    form.get_by_test_id("train-model").select_option(label="mistudio-demo-gpt (demo)")
    form.get_by_test_id("train-source-kind").select_option("streamed")
    form.get_by_test_id("train-samples").fill("50")
    form.get_by_test_id("train-advanced-toggle").click()
    form.get_by_test_id("train-steps").fill("20")
    form.get_by_test_id("train-autosave").fill("0")
    form.locator("#hp-exp").select_option("2")  # 256 latents on the 128-wide demo model

    form.get_by_test_id("train-encoder").select_option("batchtopk")
    expect(form.locator("label[for=hp-k]")).to_have_text("Average active latents (k)")
    expect(form.get_by_test_id("train-target-l0")).to_have_count(0)  # k sets a k architecture's L0
    form.get_by_test_id("train-encoder").select_option("matryoshka_batchtopk")
    widths = form.get_by_test_id("train-widths")
    widths.fill("32, x")
    expect(form.get_by_test_id("train-start")).to_be_disabled()  # not numbers
    widths.fill("32, 96, 256")
    with page.expect_request("**/api/training/start") as sent:
        form.get_by_test_id("train-start").click()
    body, hp = sent.value.post_data_json, sent.value.post_data_json["hyperparameters"]
    assert body["encoder_type"] == "matryoshka_batchtopk"
    assert hp["matryoshka_widths"] == [32, 96, 256] and hp["target_l0"] is None
    card = page.get_by_test_id("training-card").first
    expect(card).to_contain_text("matryoshka_batchtopk")

    # Gated with a target L0: the coefficient is the controller's; its chart shows beside L0's target.
    form.get_by_test_id("train-encoder").select_option("gated")
    expect(form.get_by_test_id("train-l1")).to_be_visible()
    form.get_by_test_id("train-target-l0").fill("16")
    expect(form.get_by_test_id("train-l1")).to_have_count(0)
    expect(form.get_by_test_id("train-coefficient-auto")).to_be_visible()
    with page.expect_request("**/api/training/start") as sent:
        form.get_by_test_id("train-start").click()
    body = sent.value.post_data_json
    assert body["encoder_type"] == "gated" and body["hyperparameters"]["target_l0"] == 16
    assert body["hyperparameters"]["matryoshka_widths"] is None and body["hyperparameters"]["l1_coefficient"] > 0
    gated = page.locator('[data-testid="training-card"]', has_text="gated").first
    expect(gated).to_have_attribute("data-status", "completed", timeout=180_000)
    tid = gated.get_attribute("data-training-id")
    assert app.get(f"/api/training/{tid}").json()["data"]["config"]["hyperparameters"]["target_l0"] == 16
    gated.get_by_test_id("toggle-metrics").click()
    expect(gated.get_by_test_id("chart-l0")).to_contain_text("target 16")
    expect(gated.get_by_test_id("chart-sparsity_coefficient").locator("svg polyline").first).to_be_visible()
    screenshot(page, "training-target-l0")
