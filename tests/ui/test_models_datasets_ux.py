"""Issue 21's rough edges in the Models and Datasets tabs, in a real browser against the real API and
worker: extraction templates in the extraction dialog (point 3), rows without text counted and shown
(point 4), a cancelled extraction leaves no row (point 12), the dataset forms fold away once a dataset
exists (point 12)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from playwright.sync_api import expect

from tests.support import Appliance, demo_kit, started_demo
from tests.ui.conftest import DIST, SCREEN_DIR

SCREENSHOTS = SCREEN_DIR


@pytest.fixture(scope="module")
def app(tmp_path_factory) -> Iterator[Appliance]:
    # One appliance for the module: the tests find their own resources by id, not by being alone.
    yield from started_demo(tmp_path_factory, "ui-models-datasets", MISTUDIO_WEBUI_DIR=str(DIST), HF_HUB_OFFLINE="1")


def _shot(page, name: str) -> None:
    """A 1440x900 picture of the screen for the closing note."""
    page.set_viewport_size({"width": 1440, "height": 900})
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"))


def _extract_dialog(app: Appliance, open_page):
    demo_kit(app)
    page, _ = open_page(app.url, "/models")
    demo = page.get_by_test_id("model-row").filter(has_text="demo")
    expect(demo).to_have_attribute("data-status", "ready", timeout=120_000)
    demo.get_by_test_id("model-extract").click()
    return page, page.get_by_test_id("extract-modal")


def _pressed(dialog) -> list[int]:
    layers = dialog.get_by_test_id("extract-layer")
    return [i for i in range(layers.count()) if layers.nth(i).get_attribute("aria-pressed") == "true"]


def test_point3_extraction_dialog_loads_applies_and_saves_templates(app: Appliance, open_page) -> None:
    # A template of an older version, in absolute layers of a 12-layer model.
    old = app.post(
        "/api/templates/extraction",
        json={"name": "Old layers", "config": {"layers": [0, 6, 11], "hook_types": ["mlp"]}},
    )
    assert old.status_code == 201, old.text
    page, dialog = _extract_dialog(app, open_page)
    choose = dialog.get_by_test_id("extract-template")

    # Quick Scan is the first, middle and last layers of whatever model: 0, 2, 3 of the demo's four.
    choose.select_option(label="★ Quick Scan")
    expect(dialog.get_by_test_id("extract-layer").nth(1)).to_have_attribute("aria-pressed", "false")
    expect(dialog.get_by_test_id("extract-layer").nth(2)).to_have_attribute("aria-pressed", "true")
    assert _pressed(dialog) == [0, 2, 3]
    expect(dialog.get_by_test_id("extract-max-samples")).to_have_value("5000")
    expect(dialog.get_by_test_id("extract-template-notes")).to_have_count(0)  # nothing had to change

    # Absolute layers beyond the model are clamped, and the dialog says so.
    choose.select_option(label="Old layers")
    notes = dialog.get_by_test_id("extract-template-notes")
    expect(notes).to_contain_text("Layers 6, 11 are beyond this model's layers 0-3: layer 3 is used instead")
    assert _pressed(dialog) == [0, 3]
    expect(dialog.get_by_test_id("extract-type")).to_have_value("mlp")

    # Every layer, three hook types (a combination the select offers once a template asks for it).
    choose.select_option(label="Full Analysis")
    expect(dialog.get_by_test_id("extract-type")).to_have_value("residual,mlp,attention")
    expect(dialog.get_by_test_id("extract-type").locator("option:checked")).to_have_text(
        "Residual Stream + MLP Output + Attention Output"
    )
    assert _pressed(dialog) == [0, 1, 2, 3]
    expect(dialog.get_by_test_id("extract-template-notes")).to_contain_text("The template reads every sample")
    _shot(page, "models-extract-templates")

    # Save the dialog's settings (layer 1 of 4: a third of the depth) and apply them again.
    dialog.get_by_role("button", name="Deselect All").click()
    dialog.get_by_test_id("extract-layer").nth(1).click()
    dialog.get_by_test_id("extract-template-save").click()
    dialog.get_by_test_id("extract-template-name").fill("Third of the depth")
    dialog.get_by_test_id("extract-template-save-confirm").click()
    expect(page.get_by_test_id("toast").filter(has_text="Template saved")).to_be_visible()
    (saved,) = [t for t in app.get("/api/templates/extraction").json()["data"] if t["name"] == "Third of the depth"]
    assert saved["config"]["depths"] == [0.3333] and saved["config"]["layers"] is None, saved
    assert saved["config"]["hook_types"] == ["residual", "mlp", "attention"]
    choose.select_option(label="★ Quick Scan")
    expect(dialog.get_by_test_id("extract-layer").nth(1)).to_have_attribute("aria-pressed", "false")
    choose.select_option(label="Third of the depth")
    expect(dialog.get_by_test_id("extract-layer").nth(1)).to_have_attribute("aria-pressed", "true")
    assert _pressed(dialog) == [1]


def test_point4_rows_without_text_are_skipped_and_the_dataset_says_so(app: Appliance, open_page, tmp_path) -> None:
    path = tmp_path / "typos.jsonl"
    rows = [{"text": f"note {i} about sparse features"} for i in range(20)] + [{"txt": "a typo"}, {"text": " "}]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    page, _ = open_page(app.url, "/datasets")
    page.get_by_test_id("dataset-add-toggle").click()  # a dataset exists (the demo's): the forms are folded
    page.get_by_test_id("dataset-upload-input").set_input_files(str(path))
    page.get_by_test_id("dataset-upload-button").click()
    row = page.get_by_test_id("dataset-row").filter(has_text="typos")
    expect(row).to_have_attribute("data-status", "ready", timeout=60_000)
    expect(row).to_contain_text("20 samples")
    expect(row.get_by_test_id("dataset-skipped")).to_have_text(" • 2 rows skipped: 1 without text, 1 blank")
    row.click()
    expect(page.get_by_test_id("dataset-overview-skipped")).to_contain_text(
        '2 rows skipped: 1 without text, 1 blank. Rows with no text in column "text" are left out'
    )


def test_point12_cancelled_extraction_leaves_no_activation_set_row(app: Appliance, open_page) -> None:
    model, dataset = demo_kit(app)
    # Long enough to still be running when the cancel is clicked: every sample, one at a time.
    body = {"dataset_id": dataset["id"], "layers": [0], "batch_size": 1, "max_samples": 5000, "context_length": 256}
    response = app.post(f"/api/models/{model['id']}/extract-activations", json=body)
    assert response.status_code == 202, response.text
    job_id = response.json()["data"]["job_id"]
    activation_id = app.get(f"/api/jobs/{job_id}").json()["data"]["target"]["id"]
    page, _ = open_page(app.url, "/models")
    card = page.locator(f"[data-activation-id={activation_id}]")
    expect(card).to_have_attribute("data-status", "extracting", timeout=30_000)
    card.get_by_test_id("activation-set-cancel").click()
    expect(card).to_have_count(0, timeout=60_000)  # gone, not a "Cancelled" row
    assert app.wait_status(job_id, "cancelled", timeout=60)["status"] == "cancelled"
    assert app.get(f"/api/activations/{activation_id}").status_code == 404
    # The job's record stays in the jobs panel.
    page.get_by_test_id("jobs-indicator").click()
    expect(page.locator(f"[data-testid=job-row][data-job-id={job_id}]")).to_have_attribute("data-status", "cancelled")
    assert not list((app.data_dir / "activations").glob(f"{activation_id}*"))


def test_point12_dataset_forms_collapse_once_a_dataset_exists(app: Appliance, make_appliance, open_page) -> None:
    # make_appliance first: its appliance stops after the pages close (else their event stream breaks).
    demo_kit(app)
    page, _ = open_page(app.url, "/datasets")
    page.set_viewport_size({"width": 1440, "height": 900})
    forms = page.get_by_test_id("dataset-forms")
    toggle = page.get_by_test_id("dataset-add-toggle")
    expect(toggle).to_have_text("Add Dataset")
    expect(forms).to_be_hidden()
    # The list is what the tab opens on: the first dataset is on screen at 1440x900.
    first = page.get_by_test_id("dataset-row").first
    expect(first).to_be_visible()
    box = first.bounding_box()
    assert box is not None and box["y"] + box["height"] <= 900, box
    _shot(page, "datasets-forms-collapsed")
    toggle.click()
    expect(forms).to_be_visible()
    expect(page.get_by_test_id("dataset-repo-input")).to_be_visible()
    expect(page.get_by_test_id("dataset-upload-input")).to_be_visible()
    expect(toggle).to_have_attribute("aria-expanded", "true")
    toggle.click()
    expect(forms).to_be_hidden()

    # With no dataset the forms are what a user needs: open, and nothing to fold them with.
    empty = make_appliance({"MISTUDIO_WEBUI_DIR": str(DIST)})
    empty.start_api()
    page, _ = open_page(empty.url, "/datasets")
    expect(page.get_by_test_id("dataset-repo-input")).to_be_visible()
    expect(page.get_by_test_id("dataset-upload-input")).to_be_visible()
    expect(page.get_by_test_id("dataset-add-toggle")).to_have_count(0)
