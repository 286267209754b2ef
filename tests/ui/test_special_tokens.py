"""Special tokens in a real browser: the extraction dialog leaves them out by default and can keep
them (the choice reaches the job and the set), the ids field refuses what is not a list of ids, and
the activation set card, the training form and card, and the feature summary show what was left out."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import expect

from tests.support import Appliance, demo_activations, demo_kit, started_demo
from tests.ui.conftest import DIST, screenshot

EOT = 0  # the demo tokenizer's <|endoftext|>, its only special token, first in every sample


@pytest.fixture(scope="module")
def app(tmp_path_factory) -> Iterator[Appliance]:
    # One appliance for the module: the tests find their own resources by id, not by being alone.
    yield from started_demo(tmp_path_factory, "ui-special-tokens", MISTUDIO_WEBUI_DIR=str(DIST), HF_HUB_OFFLINE="1")


def test_extraction_dialog_leaves_special_tokens_out_by_default_and_can_keep_them(app: Appliance, open_page) -> None:
    demo_kit(app)
    page, _ = open_page(app.url, "/models")
    demo = page.get_by_test_id("model-row").filter(has_text="demo")
    expect(demo).to_have_attribute("data-status", "ready", timeout=120_000)
    before = {s["id"] for s in app.get("/api/activations").json()["data"]}
    demo.get_by_test_id("model-extract").click()
    dialog = page.get_by_test_id("extract-modal")
    toggle = dialog.get_by_test_id("extract-special-toggle")
    expect(toggle).to_have_attribute("aria-checked", "true")

    # The ids field says what is wrong and holds the start back until it is a list of ids.
    ids = dialog.get_by_test_id("extract-special-ids")
    ids.fill("0, eos")
    expect(dialog.get_by_test_id("extract-special-ids-error")).to_contain_text('"eos" is not a token id')
    expect(dialog.get_by_test_id("extract-start")).to_be_disabled()
    ids.fill("0")
    expect(dialog.get_by_test_id("extract-special-ids-error")).to_have_count(0)
    expect(dialog.get_by_test_id("extract-start")).to_be_enabled()

    toggle.click()
    expect(toggle).to_have_attribute("aria-checked", "false")
    expect(ids).to_have_count(0)  # nothing is left out, so there are no ids to give
    dialog.get_by_test_id("extract-max-samples").fill("30")
    screenshot(page, "special-tokens-extract-off")
    dialog.get_by_test_id("extract-start").click()
    expect(page.get_by_test_id("toast").filter(has_text="Activations extracted")).to_be_visible(timeout=120_000)

    (act,) = [s for s in app.get("/api/activations").json()["data"] if s["id"] not in before]
    job = app.get(f"/api/jobs/{act['job_id']}").json()["data"]
    assert job["params"]["exclude_special_tokens"] is False and not job["params"].get("special_token_ids")
    assert act["config"]["exclude_special_tokens"] is False and act["excluded_token_ids"] == []
    card = page.locator(f"[data-activation-id={act['id']}]")
    expect(card).to_have_attribute("data-status", "ready")
    expect(card.get_by_test_id("activation-set-special")).to_have_text("special tokens kept")


def test_the_set_the_training_and_the_features_show_what_was_left_out(app: Appliance, open_page) -> None:
    model, dataset = demo_kit(app)
    _, act = demo_activations(app, 2, max_samples=30, context_length=32)  # the default: left out
    assert act["excluded_token_ids"] == [EOT]

    page, _ = open_page(app.url, "/models")
    card = page.locator(f"[data-activation-id={act['id']}]")
    expect(card).to_have_attribute("data-status", "ready", timeout=30_000)
    expect(card.get_by_test_id("activation-set-special")).to_have_text(f"special tokens left out: id {EOT}")
    screenshot(page, "special-tokens-activation-set")

    # A training on that set inherits its choice: shown, not editable.
    page.goto(app.url + "/training")
    form = page.get_by_test_id("training-form")
    form.get_by_test_id("train-dataset").select_option(label="Python stdlib docs (demo)")
    form.get_by_test_id("train-model").select_option(label="mistudio-demo-gpt (demo)")
    form.get_by_test_id("train-set").select_option(act["id"])
    recorded = form.get_by_test_id("train-special-recorded")
    expect(recorded).to_contain_text(f"special tokens left out: id {EOT}")
    expect(recorded.get_by_role("switch")).to_be_disabled()
    expect(recorded.get_by_role("switch")).to_have_attribute("aria-checked", "true")
    expect(form.get_by_test_id("train-special-toggle")).to_have_count(0)
    form.get_by_test_id("train-source-kind").select_option("streamed")
    expect(form.get_by_test_id("train-special-toggle")).to_have_attribute("aria-checked", "true")

    # A streamed training leaves out the same by default; its features count none of those positions.
    response = app.post(
        "/api/training/start",
        json={
            "model_id": model["id"],
            "dataset_id": dataset["id"],
            "layer": 2,
            "encoder_type": "topk",
            "max_samples": 120,
            "context_length": 32,
            "hyperparameters": {"k": 4, "expansion_factor": 2, "batch_size": 128, "total_steps": 20, "log_every": 10},
        },
    )
    tid = app.completed(response, timeout=300)["target"]["id"]
    assert app.get(f"/api/training/{tid}").json()["data"]["excluded_token_ids"] == [EOT]
    page.goto(app.url + "/features")
    features = page.get_by_test_id("features-card")
    expect(features.get_by_test_id("features-special-toggle")).to_have_attribute("aria-checked", "true")
    features.get_by_test_id("features-samples").fill("20")
    features.get_by_test_id("features-extract").click()
    expect(features.get_by_test_id("features-summary")).to_be_visible(timeout=180_000)
    summary = app.get(f"/api/training/{tid}/features/summary").json()["data"]["summary"]
    assert summary["excluded_token_ids"] == [EOT] and summary["excluded_positions"] >= 20  # one per sample at least
    expect(features.get_by_test_id("features-special-summary")).to_have_text(
        f"special tokens left out: id {EOT} • {summary['excluded_positions']:,} positions not counted"
    )
    screenshot(page, "special-tokens-features")
    page.goto(app.url + "/training")
    trained = page.locator(f"[data-training-id={tid}]")
    expect(trained.get_by_test_id("training-special")).to_have_text(f"special tokens left out: id {EOT}")
