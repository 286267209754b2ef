"""The storage view in the browser (issue 21, point 16), against a real appliance: opened from the header,
the data disk and what takes it largest first; a delete goes through the resource's own endpoint, so a
refusal names what is built on it exactly as the API words it; a prune of a training's checkpoints keeps
the newest and the best."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import expect

from tests.support import Appliance, demo_kit, started_demo
from tests.ui.conftest import DIST, SCREEN_DIR

SCREENSHOTS = SCREEN_DIR
CHECKPOINTS = 4


@pytest.fixture(scope="module")
def app(tmp_path_factory) -> Iterator[Appliance]:
    # Every checkpoint kept by the automatic bound, so the view has older ones to prune.
    env = {"MISTUDIO_WEBUI_DIR": str(DIST), "HF_HUB_OFFLINE": "1", "MISTUDIO_KEEP_CHECKPOINTS": "0"}
    yield from started_demo(tmp_path_factory, "storage-ui", **env)


@pytest.fixture(scope="module")
def training(app: Appliance) -> dict:
    """A small TopK SAE streamed from the demo model, with a checkpoint every 10 of its 40 steps."""
    model, dataset = demo_kit(app)
    response = app.post(
        "/api/training/start",
        json={
            "model_id": model["id"],
            "dataset_id": dataset["id"],
            "layer": 2,
            "encoder_type": "topk",
            "max_samples": 300,
            "context_length": 64,
            "auto_save_interval": 10,
            "hyperparameters": {"k": 8, "expansion_factor": 2, "batch_size": 256, "total_steps": 40, "log_every": 10},
        },
    )
    job = app.wait_status(response.json()["data"]["job_id"], "completed", "failed", timeout=300)
    assert job["status"] == "completed", job["error"]
    return app.get(f"/api/training/{job['target']['id']}").json()["data"]


def test_point16_storage_view_lists_deletes_and_prunes(app: Appliance, training: dict, open_page) -> None:
    tid = training["id"]
    listed = app.get(f"/api/training/{tid}/checkpoints").json()["data"]
    assert len(listed) == CHECKPOINTS, listed
    best = min(listed, key=lambda c: (c["held_out_loss"], c["step"]))["step"]
    kept = sorted({listed[-1]["step"], best})
    api_items = app.get("/api/system/storage").json()["data"]["items"]

    page, problems = open_page(app.url)
    page.set_viewport_size({"width": 1440, "height": 900})
    page.on("dialog", lambda dialog: dialog.accept())
    page.get_by_test_id("storage-open").click()
    view = page.get_by_test_id("storage-view")
    expect(view.get_by_test_id("storage-disk")).to_contain_text(re.compile(r"free of \d"))
    rows = view.get_by_test_id("storage-item")
    expect(rows).to_have_count(len(api_items))
    # Largest first, as the API lists them.
    assert rows.evaluate_all("rows => rows.map(r => r.dataset.path)") == [i["path"] for i in api_items]
    row = view.locator(f"[data-testid=storage-item][data-id='{tid}']")
    expect(row.get_by_test_id("storage-parts")).to_contain_text(f"checkpoints ({CHECKPOINTS})")
    model_row = view.locator(f"[data-testid=storage-item][data-id='{training['model_id']}']")
    expect(model_row.get_by_test_id("storage-used-by")).to_contain_text("training")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "storage-view.png"))

    # The model is used by the training: its own DELETE refuses, and the toast says all of it.
    model_id = training["model_id"]
    with app.client() as client:
        refusal = client.delete(f"/api/models/{model_id}").json()["error"]["message"]
    with problems.expected():
        model_row.get_by_test_id("storage-delete").click()
        toast = page.locator("[data-testid=toast][data-type=error]")
        expect(toast).to_contain_text(refusal)
    assert app.get(f"/api/models/{model_id}").status_code == 200

    # Prune the training's older checkpoints: the newest and the best stay.
    row.get_by_test_id("storage-prune").click()
    expect(page.locator("[data-testid=toast][data-type=success]")).to_contain_text("Freed")
    expect(row.get_by_test_id("storage-parts")).to_contain_text(f"checkpoints ({len(kept)})")
    expect(row.get_by_test_id("storage-prune")).to_have_count(0)
    assert [c["step"] for c in app.get(f"/api/training/{tid}/checkpoints").json()["data"]] == kept
