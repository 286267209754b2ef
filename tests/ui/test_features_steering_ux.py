"""The feature and steering screens at 1440x900, in a real browser on a demo-model SAE (issue 21): the feature
modal keeps its label whole, its stat tiles above the sub-tabs and a styled token tooltip (point 8); the logit
lens labels its figures and scales its bars to each column (point 9); partial byte-level tokens read as byte
escapes, never U+FFFD (point 10); the steering results sit beside the configuration (point 12)."""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.support import Appliance, demo_kit, started_demo
from tests.ui.conftest import DIST, SCREEN_DIR, screenshot

VIEWPORT = {"width": 1440, "height": 900}
SCREENSHOTS = SCREEN_DIR
ESCAPE = re.compile(r"\\x[0-9a-f]{2}")
# How many lines an element's text takes.
LINES = "e => { const r = document.createRange(); r.selectNodeContents(e); return r.getClientRects().length; }"


@pytest.fixture(scope="module")
def sae(tmp_path_factory) -> Iterator[tuple[Appliance, str]]:
    """One appliance for the module with a small demo SAE whose features were extracted: (app, training id)."""
    running = started_demo(tmp_path_factory, "ui-features-steering", MISTUDIO_WEBUI_DIR=str(DIST), HF_HUB_OFFLINE="1")
    app = next(running)
    try:
        tid = _train_tiny(app, *demo_kit(app))
        app.completed(app.post("/api/features/extract", json={"training_id": tid, "eval_samples": 40}))
        yield app, tid
    finally:
        running.close()  # stops the API and the worker


def _train_tiny(app: Appliance, model: dict[str, Any], dataset: dict[str, Any]) -> str:
    """The smallest TopK SAE whose features show the points: labels, contexts and a logit lens are there
    however little it trained."""
    body = {
        "model_id": model["id"],
        "dataset_id": dataset["id"],
        "layer": 2,
        "encoder_type": "topk",
        "max_samples": 120,
        "context_length": 64,
        "hyperparameters": {"k": 8, "expansion_factor": 2, "batch_size": 256, "total_steps": 30, "log_every": 10},
    }
    return app.completed(app.post("/api/training/start", json=body))["target"]["id"]


def _fixed(value: float, digits: int) -> str:
    """JavaScript's toFixed: the exact binary value, ties away from zero."""
    return str(Decimal(value).quantize(Decimal(1).scaleb(-digits), rounding=ROUND_HALF_UP))


def _features(app: Appliance, tid: str) -> list[dict[str, Any]]:
    return app.get(f"/api/training/{tid}/features", params={"limit": 500}).json()["data"]


def _open_feature(page, index: int):
    card = page.get_by_test_id("features-card")
    card.get_by_test_id("features-search").fill(f"#{index}")
    rows = card.get_by_test_id("feature-row")
    expect(rows).to_have_count(1)
    rows.first.click()
    modal = page.get_by_test_id("feature-modal")
    expect(modal.get_by_test_id("feature-support")).to_be_visible()  # the feature is loaded
    return modal


def _keep(page, name: str) -> None:
    """The viewport as the closing note shows it (docs/screenshots), and the test artifact."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"))
    screenshot(page, name)


def test_point8_feature_modal_label_favourite_tiles_scroll_and_tooltip(sae, open_page) -> None:
    app, tid = sae
    longest = max((f for f in _features(app, tid) if f["frequency"] > 0), key=lambda f: len(f["label"]))
    assert len(longest["label"]) > 60, longest["label"]  # long enough to be cut by a narrow field
    page, problems = open_page(app.url, "/features")
    page.set_viewport_size(VIEWPORT)
    modal = _open_feature(page, longest["index"])
    expect(modal.get_by_test_id("feature-example").first).to_be_visible()

    # The whole label shows, and "☆ Favourite" stays on one line beside it.
    label = modal.get_by_test_id("feature-label")
    expect(label).to_have_value(longest["label"])
    assert label.evaluate("e => e.scrollWidth <= e.clientWidth"), "the label is cut off"
    favourite = modal.get_by_test_id("feature-favorite")
    lines = favourite.evaluate(LINES)
    assert lines == 1, f"the favourite button wraps onto {lines} lines"
    assert favourite.bounding_box()["height"] <= label.bounding_box()["height"] + 1

    # The stat tiles sit above the sub-tabs, outside what scrolls.
    stats = modal.get_by_test_id("feature-stats")
    tabs = modal.get_by_role("tablist")
    assert stats.bounding_box()["y"] + stats.bounding_box()["height"] <= tabs.bounding_box()["y"]

    # A token's tooltip is a styled card: the token, its activation, its id and position (no native title).
    detail = app.get(f"/api/training/{tid}/features/{longest['index']}", params={"examples": 20, "window": 10}).json()
    example = detail["data"]["examples"][0]
    j = example["max_index"]
    joined = example["joined"]
    start = j
    while joined[start]:
        start -= 1
    end = j + 1
    while end < len(joined) and joined[end]:
        end += 1
    chip = modal.get_by_test_id("feature-example").first.get_by_test_id("token-chip").nth(start - sum(joined[:start]))
    assert chip.get_attribute("title") is None
    chip.hover()
    tooltip = page.get_by_test_id("token-tooltip")
    expect(tooltip).to_be_visible()
    token = "".join(example["tokens"][start:end])
    expect(tooltip.get_by_test_id("token-tooltip-token")).to_have_text(f'"{token}"')
    activation = max(example["activations"][start:end])
    expect(tooltip.get_by_test_id("token-tooltip-activation")).to_have_text(_fixed(activation, 4))
    ids = example["token_ids"][start:end]
    first = example["position"] - j
    where = f"token id{'s' if len(ids) > 1 else ''} {', '.join(map(str, ids))} • position {first + start}"
    if end - start > 1:
        where += f"–{first + end - 1}"
    expect(tooltip.get_by_test_id("token-tooltip-where")).to_have_text(where)
    tip, anchor = tooltip.bounding_box(), chip.bounding_box()
    assert tip["y"] + tip["height"] <= anchor["y"] or tip["y"] >= anchor["y"] + anchor["height"]  # beside, not over it
    _keep(page, "feature-modal-examples")
    page.mouse.move(0, 0)
    expect(tooltip).to_have_count(0)

    # Scrolled down the examples, another sub-tab opens at its top with the tiles whole above it.
    scroller = modal.get_by_test_id("feature-tab-body").locator("xpath=..")
    scroller.evaluate("e => { e.scrollTop = e.scrollHeight; }")
    assert scroller.evaluate("e => e.scrollTop") > 0
    modal.get_by_role("tab", name="logit lens").click()
    expect(modal.get_by_test_id("feature-logit-lens")).to_be_visible()
    assert scroller.evaluate("e => e.scrollTop") == 0
    assert stats.bounding_box()["y"] >= modal.bounding_box()["y"]
    problems.assert_none()


def test_point9_logit_lens_labels_logit_and_probability_changes_with_visible_bars(sae, open_page) -> None:
    app, tid = sae
    feature = next(f for f in _features(app, tid) if f["frequency"] > 0)
    lens = app.get(f"/api/training/{tid}/features/{feature['index']}/logit-lens").json()["data"]
    model = next(m for m in app.get("/api/models").json()["data"] if m["source"] == "demo")
    vocab = app.get(f"/api/models/{model['id']}/architecture").json()["data"]["vocab_size"]
    assert lens["vocab_size"] == vocab and lens["logsumexp"] is not None, lens
    page, problems = open_page(app.url, "/features")
    page.set_viewport_size(VIEWPORT)
    modal = _open_feature(page, feature["index"])
    modal.get_by_role("tab", name="logit lens").click()
    for side in ("positive", "negative"):
        column = modal.get_by_test_id(f"logit-column-{side}")
        expect(column.get_by_test_id("logit-header")).to_have_text(re.compile(r"logit Δ\s*prob\. vs even"))
        rows = column.get_by_test_id("logit-row")
        expect(rows).to_have_count(len(lens[side]))
        largest = max(abs(v) for _, v in lens[side])
        widths = []
        for i, (_, value) in enumerate(lens[side]):
            row = rows.nth(i)
            sign = "+" if value > 0 else "−" if value < 0 else ""
            expect(row.get_by_test_id("logit-delta")).to_have_text(sign + _fixed(abs(value), 3))
            ratio = vocab * math.exp(value - lens["logsumexp"])
            shown = row.get_by_test_id("logit-prob").inner_text()
            assert shown.startswith("×") and abs(float(shown[1:]) - ratio) <= 0.051, (shown, ratio)
            style = row.get_by_test_id("logit-bar").get_attribute("style")
            widths.append(float(re.search(r"width:\s*([\d.]+)%", style).group(1)))
            assert abs(widths[-1] - 100 * abs(value) / largest) < 0.01, (style, value, largest)
        # Scaled to the column's own largest change: the first bar is full and the others show their differences.
        assert widths[0] == 100 and min(widths) > 5, widths
        assert "%" not in column.inner_text()
    expect(modal.get_by_test_id("logit-legend")).to_contain_text(f"{vocab:,}-token vocabulary")
    _keep(page, "feature-modal-logit-lens")
    problems.assert_none()


def test_point10_partial_tokens_read_as_byte_escapes_never_a_replacement_character(sae, open_page) -> None:
    app, tid = sae
    points = app.get(f"/api/training/{tid}/features/map").json()["data"]
    assert not [p["label"] for p in points if "\ufffd" in p["label"]]
    escaped = [p for p in points if ESCAPE.search(p["label"])]
    assert escaped, "the demo's labels name byte-level tokens (the logit lens promotes them)"
    assert not [p["label"] for p in escaped if "\\\\x" in p["label"]]  # an escape is written once, not doubled
    for point in escaped[:8]:
        detail = app.get(f"/api/training/{tid}/features/{point['index']}", params={"examples": 5}).json()["data"]
        texts = [t for t, _ in detail["top_tokens"]]
        texts += [t for side in ("positive", "negative") for t, _ in detail["logit_lens"][side]]
        for example in detail["examples"] + detail["quantile_examples"]:
            assert len(example["tokens"]) == len(example["joined"]) == len(example["token_ids"])
            texts += example["tokens"]
        assert not [t for t in texts if "\ufffd" in t], point["index"]
    index, token = next(
        (p["index"], t)
        for p in escaped
        for t, _ in app.get(f"/api/training/{tid}/features/{p['index']}/logit-lens").json()["data"]["positive"]
        if ESCAPE.fullmatch(t) and t in p["label"]
    )

    page, problems = open_page(app.url, "/features")
    page.set_viewport_size(VIEWPORT)
    card = page.get_by_test_id("features-card")
    expect(card.get_by_test_id("feature-row").first).to_be_visible()
    assert "\ufffd" not in card.inner_text()
    modal = _open_feature(page, index)
    expect(modal.get_by_test_id("feature-label")).to_have_value(re.compile(re.escape(token)))
    modal.get_by_role("tab", name="logit lens").click()
    expect(modal.get_by_test_id("logit-token").filter(has_text=token).first).to_have_text(f'"{token}"')
    assert "\ufffd" not in modal.inner_text()
    page.keyboard.press("Escape")

    # The steering feature picker shows the same label.
    page.goto(app.url + "/steering")
    page.get_by_test_id("steering-search").fill(f"#{index}")
    result = page.locator(f'[data-testid="steering-search-result"][data-index="{index}"]')
    expect(result).to_contain_text(token)
    assert "\ufffd" not in result.inner_text()
    problems.assert_none()


def test_point12_steering_layout_puts_the_results_beside_the_configuration(sae, open_page) -> None:
    app, tid = sae
    feature = next(f for f in _features(app, tid) if f["frequency"] > 0)
    page, problems = open_page(app.url, "/steering")
    page.set_viewport_size(VIEWPORT)
    page.get_by_test_id("steering-search").fill(f"#{feature['index']}")
    page.locator(f'[data-testid="steering-search-result"][data-index="{feature["index"]}"]').click()
    page.get_by_test_id(f"steering-feature-{feature['index']}").get_by_role("button", name="Amplify").click()
    page.get_by_test_id("steering-example").click()
    page.get_by_test_id("steering-max-tokens").fill("12")
    page.get_by_test_id("steering-generate").click()
    steered = page.get_by_test_id("steering-output-steered")
    expect(steered).to_have_attribute("data-status", "completed", timeout=120_000)
    expect(page.get_by_test_id("steering-metrics")).to_be_visible()

    picker = page.get_by_test_id("steering-features").bounding_box()
    output = page.get_by_test_id("steering-output").bounding_box()
    config = page.get_by_test_id("steering-config").bounding_box()
    # The results follow the features directly, beside the configuration column, not below its full height.
    assert output["y"] - (picker["y"] + picker["height"]) <= 48, (picker, output)
    assert output["y"] < config["y"] + config["height"], (output, config)
    assert output["x"] + output["width"] <= config["x"], (output, config)
    # At 1440x900 the results start inside the first screen under the SAE card.
    assert output["y"] < VIEWPORT["height"], output
    # The view switch stays on one line each.
    for view in ("diff", "side", "unified"):
        button = page.get_by_test_id(f"steering-view-{view}")
        assert button.evaluate(LINES) == 1
    workspace = page.get_by_test_id("steering-workspace")
    workspace.evaluate("e => window.scrollTo(0, e.getBoundingClientRect().top + window.scrollY - 24)")
    _keep(page, "steering-results")
    problems.assert_none()
