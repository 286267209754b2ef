"""Forms and errors in a real browser at 1440x900 (issue 21): a cleared number field stays empty and a
value typed into it is the value used, in every form (point 1); error toasts stay until dismissed while
success toasts fade (point 5); a refused field reads as a sentence naming it by its label (point 6); a
refused delete names every resource built on it, by name, in the toast (point 7)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.support import REPO, Appliance, demo_activations, demo_kit, started_demo
from tests.ui.conftest import DIST, SCREEN_DIR, screenshot

VIEWPORT = {"width": 1440, "height": 900}
SCREENSHOTS = SCREEN_DIR


@pytest.fixture(scope="module")
def kit(tmp_path_factory) -> Iterator[tuple[Appliance, dict[str, Any], dict[str, Any], str]]:
    """One appliance for the module: the demo kit, an activation set of its layer 1 and a tiny TopK SAE of
    layer 2: (app, model, dataset, training id)."""
    running = started_demo(tmp_path_factory, "ui-forms-errors", MISTUDIO_WEBUI_DIR=str(DIST), HF_HUB_OFFLINE="1")
    app = next(running)
    try:
        model, dataset = demo_kit(app)
        demo_activations(app, 1, max_samples=20, context_length=32)
        body = {
            "model_id": model["id"],
            "dataset_id": dataset["id"],
            "layer": 2,
            "encoder_type": "topk",
            "max_samples": 120,
            "context_length": 64,
            "hyperparameters": {"k": 8, "expansion_factor": 2, "batch_size": 256, "total_steps": 30, "log_every": 10},
        }
        tid = app.completed(app.post("/api/training/start", json=body))["target"]["id"]
        yield app, model, dataset, tid
    finally:
        running.close()


def _open(open_page, app: Appliance, path: str, clock: bool = False):
    page, problems = open_page(app.url, path)
    page.set_viewport_size(VIEWPORT)
    if clock:
        # The page's timers run on a clock the test moves: "stays" and "fades" without waiting.
        page.clock.install()
        page.reload()
    expect(page.get_by_test_id("connection-status")).to_have_attribute("data-state", "connected", timeout=15_000)
    return page, problems


def _keep(page, name: str) -> None:
    """The viewport as the closing note shows it (docs/screenshots), and the test artifact."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"))
    screenshot(page, name)


def _clear(page, field) -> None:
    field.click()
    page.keyboard.press("ControlOrMeta+a")
    page.keyboard.press("Backspace")


def _retype_every_number_field(page, scope) -> list[str]:
    """Clear each number field in ``scope`` the way a user does, then type 37: the field must hold "" and
    then "37" (the old fields put their minimum back, so 37 became 137). The ids of the fields checked."""
    ids = scope.locator('input[type="number"]').evaluate_all("els => els.map(e => e.id)")
    checked = []
    for field_id in ids:
        field = page.locator(f"#{field_id}")
        if not field.count() or not field.is_visible():
            continue  # a field the previous one's value hid (a target L0 replaces the coefficient)
        _clear(page, field)
        expect(field, f"{field_id} after clearing").to_have_value("")
        page.keyboard.type("37")
        expect(field, f"{field_id} after typing").to_have_value("37")
        checked.append(field_id)
    return checked


def _dataset_forms(page) -> None:
    """The download and upload forms, folded away once a dataset exists (the demo's, here)."""
    expect(page.get_by_test_id("dataset-row").first).to_be_visible()
    toggle = page.get_by_test_id("dataset-add-toggle")
    if toggle.count() and toggle.get_attribute("aria-expanded") != "true":
        toggle.click()
    expect(page.get_by_test_id("dataset-repo-input")).to_be_visible()


def _training_form(page, model: dict[str, Any], dataset: dict[str, Any]):
    form = page.get_by_test_id("training-form")
    form.get_by_test_id("train-dataset").select_option(dataset["id"])
    form.get_by_test_id("train-model").select_option(model["id"])
    form.get_by_test_id("train-source-kind").select_option("streamed")
    form.get_by_test_id("train-advanced-toggle").click()
    expect(form.get_by_test_id("train-advanced")).to_be_visible()
    return form


def test_point1_every_number_field_keeps_what_is_typed(kit, open_page) -> None:
    app, model, dataset, tid = kit
    page, _ = _open(open_page, app, "/training")
    form = _training_form(page, model, dataset)

    # The steps: select all, Backspace, type 200: the field holds 200, not 1200.
    steps, start = form.get_by_test_id("train-steps"), form.get_by_test_id("train-start")
    expect(start).to_be_enabled()
    _clear(page, steps)
    expect(steps).to_have_value("")
    page.keyboard.type("200")
    expect(steps).to_have_value("200")
    # Left empty: the field says so and Start waits; nothing is put in its place.
    _clear(page, steps)
    form.get_by_test_id("train-lr").click()
    expect(steps).to_have_value("")
    expect(form.get_by_test_id("train-steps-error")).to_have_text("Enter a value.")
    expect(start).to_be_disabled()
    _keep(page, "forms-number-field-empty")
    steps.fill("0")
    expect(form.get_by_test_id("train-steps-error")).to_have_text("Must be at least 1.")
    expect(start).to_be_disabled()
    steps.fill("200")
    expect(form.get_by_test_id("train-steps-error")).to_have_count(0)
    expect(start).to_be_enabled()

    checked = _retype_every_number_field(page, form)
    form.get_by_test_id("train-encoder").select_option("topk")
    checked += _retype_every_number_field(page, form)
    assert {
        "train-context",
        "train-samples",
        "hp-lr",
        "hp-l1",
        "hp-target-l0",
        "hp-steps",
        "hp-autosave",
        "hp-k",
    } <= set(checked), checked

    # Models: the extraction dialog.
    page.goto(app.url + "/models")
    page.get_by_test_id("model-row").filter(has_text=model["name"]).get_by_test_id("model-extract").click()
    dialog = page.get_by_test_id("extract-modal")
    checked = _retype_every_number_field(page, dialog)
    assert checked == ["extract-batch", "extract-max", "extract-context"], checked
    page.keyboard.press("Escape")

    # Datasets: the download form's limit, and the tokenization settings.
    page.goto(app.url + "/datasets")
    _dataset_forms(page)
    page.get_by_test_id("dataset-advanced-toggle").click()
    assert _retype_every_number_field(page, page.get_by_test_id("datasets-download-form")) == ["dataset-max"]
    page.get_by_test_id("dataset-row").filter(has_text=dataset["name"]).first.click()
    detail = page.get_by_test_id("dataset-detail")
    detail.get_by_role("tab", name="tokenization").click()
    assert _retype_every_number_field(page, detail) == ["max-length"]
    page.keyboard.press("Escape")

    # Features: the extraction settings (the explainer's, the correlation matrix's and steering's fields need
    # extracted features, which take this machine a minute: the structure test below holds them to the same
    # component).
    page.goto(app.url + "/features")
    card = page.get_by_test_id("features-card")
    expect(card.get_by_test_id("features-extract-form")).to_be_visible(timeout=30_000)
    assert _retype_every_number_field(page, card) == ["features-samples", "features-topk"]


def test_point1_no_number_field_outside_the_shared_one() -> None:
    """Structure: every number field of the UI is Form.tsx's NumberInput (so none can coerce '' again)."""
    raw = [
        f"{path.relative_to(REPO)}:{n}"
        for path in sorted((REPO / "webui" / "src").rglob("*.tsx"))
        if path.name != "Form.tsx"
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if re.search(r"""type=["']number["']""", line)
    ]
    assert not raw, raw


def test_point5_error_toasts_stay_until_dismissed(kit, open_page) -> None:
    app, model, dataset, _ = kit
    page, problems = _open(open_page, app, "/training", clock=True)
    form = _training_form(page, model, dataset)
    page.on("dialog", lambda dialog: dialog.accept("my template"))
    form.get_by_role("button", name="Save as template").click()
    saved = page.get_by_test_id("toast").filter(has_text="Template saved")
    expect(saved).to_be_visible()

    page.goto(app.url + "/datasets")
    _dataset_forms(page)
    with problems.expected():  # the refused request is logged by the browser
        page.get_by_test_id("dataset-repo-input").fill("not a repo!")
        page.get_by_test_id("dataset-download-button").click()
        failed = page.get_by_test_id("toast").filter(has_text="Download not started")
        expect(failed).to_be_visible()
    page.clock.run_for(60_000)  # a minute looking away
    expect(failed).to_be_visible()
    expect(failed).to_have_attribute("data-type", "error")
    expect(page.get_by_test_id("toast").filter(has_text="Template saved")).to_have_count(0)
    failed.get_by_role("button", name="Dismiss").click()
    expect(failed).to_have_count(0)


def test_point6_validation_errors_name_the_field_in_a_sentence(kit, open_page) -> None:
    app, _, _, _ = kit
    page, problems = _open(open_page, app, "/datasets")
    _dataset_forms(page)
    with problems.expected():
        page.get_by_test_id("dataset-repo-input").fill("not a repo!")
        page.get_by_test_id("dataset-download-button").click()
        toast = page.get_by_test_id("toast").filter(has_text="Download not started")
        expect(toast).to_contain_text('Repository must be a Hugging Face id like "owner/name".')
    # The machine form stays in the API's details, not in what the user reads.
    text = toast.inner_text()
    assert "Expected" not in text and "`" not in text and "repo_id" not in text, text
    _keep(page, "forms-validation-toast")


def test_point7_delete_refusal_names_every_dependent(kit, open_page) -> None:
    app, model, dataset, _ = kit
    page, problems = _open(open_page, app, "/datasets")
    page.on("dialog", lambda dialog: dialog.accept())
    expected = (
        f'Dataset "{dataset["name"]}" is used by 1 activation set ("L1 residual") and 1 training'
        ' ("topk k=8 L2 residual"): delete those first.'
    )
    with problems.expected():
        page.get_by_test_id("dataset-row").filter(has_text=dataset["name"]).first.get_by_test_id(
            "dataset-delete"
        ).click()
        toast = page.get_by_test_id("toast").filter(has_text="Not deleted")
        expect(toast).to_contain_text(expected)
    expect(toast).to_be_in_viewport(ratio=1)  # the whole message, not cut off
    _keep(page, "forms-delete-refusal")

    page.goto(app.url + "/models")
    row = page.get_by_test_id("model-row").filter(has_text=model["name"])
    with problems.expected():
        row.get_by_test_id("model-delete").click()
        expect(page.get_by_test_id("toast").filter(has_text="Not deleted").last).to_contain_text(
            f'Model "{model["name"]}" is used by 1 activation set ("L1 residual") and 1 training'
            ' ("topk k=8 L2 residual"): delete those first.'
        )
