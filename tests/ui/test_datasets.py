"""The Datasets tab in a real browser against the real API, worker and the fake hub: download with
live progress, the detail modal (overview, samples search, tokenization preview and run, statistics),
and upload."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from playwright.sync_api import expect

from tests.fakehub import FakeHub, Repo
from tests.support import Appliance
from tests.ui.conftest import DIST, screenshot

ROWS = [
    {
        "text": f"Story {i}: the {'cat' if i % 3 else 'dog'} walked to the market and bought "
        f"{i % 7 + 1} apples for the family."
    }
    for i in range(3000)
]


@pytest.fixture
def hub() -> Iterator[FakeHub]:
    hub = FakeHub().start()
    jsonl = "".join(json.dumps(row) + "\n" for row in ROWS).encode()
    hub.add(Repo("acme/stories", "dataset", {"data/train.jsonl": jsonl}))
    yield hub
    hub.stop()


def test_download_browse_tokenize_and_statistics(make_appliance, hub: FakeHub, open_page) -> None:
    app: Appliance = make_appliance(
        {"MISTUDIO_WEBUI_DIR": str(DIST), "HF_ENDPOINT": hub.url, "HF_HUB_DISABLE_TELEMETRY": "1"}
    )
    app.start_api()
    app.start_worker()
    page, _ = open_page(app.url, "/datasets")
    expect(page.get_by_test_id("connection-status")).to_have_attribute("data-state", "connected", timeout=10_000)
    button = page.get_by_test_id("dataset-download-button")
    expect(button).to_be_disabled()
    page.get_by_test_id("dataset-repo-input").fill("acme/stories")
    page.get_by_test_id("dataset-token-input").fill("hf_not_needed_here")
    page.get_by_test_id("dataset-advanced-toggle").click()
    expect(page.get_by_test_id("dataset-split-input")).to_have_value("train")
    expect(button).to_be_enabled()
    screenshot(page, "datasets-download-form")

    hub.file_delay_s = 2.0  # a slow link: the row must show the download running
    button.click()
    expect(page.get_by_test_id("dataset-repo-input")).to_have_value("")
    row = page.get_by_test_id("dataset-row").filter(has_text="acme/stories")
    expect(row).to_have_attribute("data-status", "downloading", timeout=10_000)
    expect(row).to_contain_text("Downloading")
    expect(row.get_by_test_id("dataset-row-progress")).to_be_visible()
    screenshot(page, "datasets-downloading")
    expect(row).to_have_attribute("data-status", "ready", timeout=60_000)
    expect(row).to_contain_text("3,000 samples")
    dataset = app.get("/api/datasets").json()["data"][0]

    # Detail: overview.
    row.click()
    modal = page.get_by_test_id("dataset-detail")
    expect(modal).to_contain_text("acme/stories")
    expect(modal).to_contain_text("3,000 samples")
    expect(modal.get_by_test_id("dataset-overview")).to_contain_text("HuggingFace")
    screenshot(page, "datasets-detail-overview")

    # Samples: pages of 10, live search.
    modal.get_by_role("tab", name="samples").click()
    expect(modal.get_by_test_id("sample-tile")).to_have_count(10)
    expect(modal.get_by_test_id("samples-range")).to_have_text("Showing 1-10 of 3,000")
    modal.get_by_test_id("samples-next").click()
    expect(modal.get_by_test_id("samples-range")).to_have_text("Showing 11-20 of 3,000")
    modal.get_by_test_id("samples-search").fill("dog")
    dogs = sum(" dog " in r["text"] for r in ROWS)
    expect(modal.get_by_test_id("samples-range")).to_have_text(f"Showing 1-10 of {dogs:,}")
    for text in modal.get_by_test_id("sample-tile").all_inner_texts():
        assert "dog" in text
    screenshot(page, "datasets-detail-samples")

    # Tokenization: the preview's chips are the API's tokens; then the real run.
    modal.get_by_role("tab", name="tokenization").click()
    expect(modal.get_by_test_id("tokenizer-select")).to_have_value("demo")
    sentence = "The quick brown fox jumps over the lazy dog."
    modal.get_by_test_id("preview-text").fill(sentence)
    modal.get_by_test_id("preview-button").click()
    expected = app.post("/api/tokenize/preview", json={"text": sentence}).json()["data"]
    expect(modal.get_by_test_id("preview-chip")).to_have_count(expected["count"])
    expect(modal.get_by_test_id("preview-count")).to_have_text(f"{expected['count']} tokens")
    ids = [int(x) for x in modal.get_by_test_id("preview-chip").evaluate_all("els => els.map(e => e.dataset.tokenId)")]
    assert ids == [t["id"] for t in expected["tokens"]]
    modal.get_by_test_id("max-length-input").fill("64")
    screenshot(page, "datasets-detail-tokenization")
    modal.get_by_test_id("tokenize-apply").click()
    expect(modal.get_by_test_id("tokenization-status")).to_have_attribute("data-status", "ready", timeout=60_000)
    expect(page.get_by_test_id("toast").filter(has_text="Dataset tokenized")).to_be_visible()

    # Statistics: the numbers the API computed.
    stats = app.get(f"/api/datasets/{dataset['id']}").json()["data"]["tokenizations"][0]["stats"]
    modal.get_by_role("tab", name="statistics").click()
    expect(modal.get_by_test_id("stats-total-samples")).to_contain_text("3,000")
    expect(modal.get_by_test_id("stats-total-tokens")).to_contain_text(f"{stats['total_tokens']:,}")
    expect(modal.get_by_test_id("stats-unique-tokens")).to_contain_text(f"{stats['unique_tokens']:,}")
    expect(modal.get_by_test_id("length-summary")).to_contain_text(f"Max: {stats['max_tokens']} tokens")
    expect(modal.get_by_test_id("split-tile")).to_have_count(1)
    expect(modal.get_by_test_id("split-tile")).to_contain_text("100% of total")
    bars = modal.get_by_test_id("histogram-bar").evaluate_all("els => els.map(e => Number(e.dataset.count))")
    assert bars == [b["count"] for b in stats["length_histogram"]]
    screenshot(page, "datasets-detail-statistics")
    page.keyboard.press("Escape")
    expect(modal).to_have_count(0)


def test_upload_from_the_browser(ui_appliance: Appliance, open_page, tmp_path) -> None:
    page, _ = open_page(ui_appliance.url, "/datasets")
    path = tmp_path / "notes.jsonl"
    path.write_text("".join(json.dumps({"body": f"note {i} about sparse features"}) + "\n" for i in range(40)))
    page.get_by_test_id("dataset-upload-input").set_input_files(str(path))
    page.get_by_test_id("dataset-upload-column").fill("body")
    page.get_by_test_id("dataset-upload-button").click()
    row = page.get_by_test_id("dataset-row").filter(has_text="notes")
    expect(row).to_have_attribute("data-status", "ready", timeout=60_000)
    expect(row).to_contain_text("40 samples")
    # A wrong column is a job error shown on the way, and no dataset is left behind. (With a dataset in
    # the list, the forms are folded behind "Add Dataset".)
    page.get_by_test_id("dataset-add-toggle").click()
    page.get_by_test_id("dataset-upload-input").set_input_files(str(path))
    page.get_by_test_id("dataset-upload-column").fill("nope")
    page.get_by_test_id("dataset-upload-button").click()
    expect(page.get_by_test_id("toast").filter(has_text="Import failed")).to_contain_text(
        "No column 'nope'", timeout=30_000
    )
    expect(page.get_by_test_id("dataset-row")).to_have_count(1)
    screenshot(page, "datasets-uploaded")
