"""The Models tab in a real browser: download from the fake hub with live progress, the architecture
viewer with the model's real numbers, and an activation extraction on the demo dataset."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import expect

from tests.fakehub import FakeHub, Repo
from tests.support import Appliance, wait_until
from tests.test_models import tiny_gpt2_files
from tests.ui.conftest import DIST, screenshot


@pytest.fixture
def hub(tmp_path) -> Iterator[FakeHub]:
    hub = FakeHub().start()
    hub.add(Repo("acme/tiny-gpt2", "model", tiny_gpt2_files(tmp_path / "tiny")))
    yield hub
    hub.stop()


def test_download_architecture_and_extraction(make_appliance, hub: FakeHub, open_page) -> None:
    app: Appliance = make_appliance(
        {
            "MISTUDIO_WEBUI_DIR": str(DIST),
            "HF_ENDPOINT": hub.url,
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "MISTUDIO_SEED_DEMO": "1",
        }
    )
    app.start_api()
    app.start_worker()
    page, _ = open_page(app.url, "/models")
    expect(page.get_by_test_id("connection-status")).to_have_attribute("data-state", "connected", timeout=10_000)
    demo = page.get_by_test_id("model-row").filter(has_text="demo")
    expect(demo).to_have_attribute("data-status", "ready", timeout=120_000)
    expect(page.get_by_test_id("model-precision-select")).to_have_value("fp32")
    expect(page.get_by_test_id("model-precision-select").locator("option[value=q4]")).to_be_disabled()

    hub.file_delay_s = 1.5
    page.get_by_test_id("model-repo-input").fill("acme/tiny-gpt2")
    page.get_by_test_id("model-download-button").click()
    row = page.get_by_test_id("model-row").filter(has_text="tiny-gpt2")
    expect(row).to_have_attribute("data-status", "downloading", timeout=10_000)
    expect(row.get_by_test_id("model-progress")).to_be_visible()
    screenshot(page, "models-downloading")
    expect(row).to_have_attribute("data-status", "ready", timeout=60_000)
    expect(row).to_contain_text("FP32 precision")

    row.get_by_test_id("model-open-architecture").click()
    modal = page.get_by_test_id("architecture-modal")
    expect(modal).to_contain_text("tiny-gpt2 Architecture")
    expect(modal.get_by_test_id("arch-hidden")).to_contain_text("32")
    expect(modal.get_by_test_id("arch-heads")).to_contain_text("4")
    expect(modal.get_by_test_id("arch-layer-row")).to_have_count(2 + 3)  # embedding, 2 blocks, norm, output
    expect(modal).to_contain_text("hook_resid_post")
    screenshot(page, "models-architecture")
    page.keyboard.press("Escape")

    # Extraction on the demo dataset with the demo model: the layer grid has its real 4 layers.
    wait_until(
        lambda: any(d["source"] == "demo" and d["status"] == "ready" for d in app.get("/api/datasets").json()["data"]),
        timeout=120,
        what="the demo dataset",
    )
    page.reload()
    demo = page.get_by_test_id("model-row").filter(has_text="demo")
    demo.get_by_test_id("model-extract").click()
    dialog = page.get_by_test_id("extract-modal")
    layers = app.get(f"/api/models/{demo.get_attribute('data-model-id')}").json()["data"]["layers"]
    expect(dialog.get_by_test_id("extract-layer")).to_have_count(layers)
    expect(dialog.get_by_test_id("extract-dataset")).to_contain_text("Python stdlib docs")
    dialog.get_by_test_id("extract-max-samples").fill("60")
    screenshot(page, "models-extract")
    dialog.get_by_test_id("extract-start").click()
    expect(page.get_by_test_id("toast").filter(has_text="Activations extracted")).to_be_visible(timeout=120_000)
    expect(dialog).to_have_count(0, timeout=5_000)
    expect(page.get_by_test_id("activation-set")).to_have_attribute("data-status", "ready")
    (act,) = app.get("/api/activations").json()["data"]
    assert act["manifest"]["samples"] == 60 and act["config"]["layers"] == sorted({0, layers // 2, layers - 1})
    screenshot(page, "models-activation-set")
