"""The Features tab in a real browser: extract the features of a demo-model SAE, search and sort
(scores with their intervals, rare features "too rare to score"), open a feature (score and support,
examples, logit lens, correlations, ablation, a heatmap over typed text), rename and favourite it, and
open the map."""

from __future__ import annotations

import re
from decimal import ROUND_HALF_UP, Decimal

from playwright.sync_api import expect

from tests.support import wait_until
from tests.ui.conftest import screenshot, train_small_topk


def fixed(value: float) -> str:
    """JavaScript's value.toFixed(2), as the UI writes a score: the exact binary value, ties away from zero."""
    return str(Decimal(value).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))


def test_extract_browse_open_label_and_map(demo_appliance, open_page) -> None:
    app, model, dataset = demo_appliance
    tid = train_small_topk(app, model, dataset)

    page, problems = open_page(app.url, "/features")
    card = page.get_by_test_id("features-card")
    expect(card.get_by_test_id("features-extract-form")).to_be_visible()
    card.get_by_test_id("features-samples").fill("80")
    card.get_by_test_id("features-extract").click()
    expect(card.get_by_test_id("features-summary")).to_be_visible(timeout=180_000)
    summary = app.get(f"/api/training/{tid}/features/summary").json()["data"]["summary"]
    expect(card.get_by_test_id("features-summary")).to_contain_text(f"{summary['alive']:,}")
    rows = card.get_by_test_id("feature-row")
    expect(rows.first).to_be_visible()
    expect(card.get_by_test_id("features-support-summary")).to_contain_text(
        f"{summary['too_rare']:,} too rare to score (a score needs ≥ {summary['min_active_samples']} active samples"
    )

    # Sorted by interpretability: the best lower bound first, shown with its interval.
    card.get_by_test_id("features-sort").select_option("interpretability")
    ranked = app.get(f"/api/training/{tid}/features", params={"sort_by": "interpretability", "limit": 1})
    best = ranked.json()["data"][0]
    assert best["score_state"] == "scored", best
    expect(rows.first).to_contain_text(f"#{best['index']}")
    interval = f"{fixed(best['score'])} ({fixed(best['score_low'])}–{fixed(best['score_high'])})"
    expect(rows.first.get_by_test_id("feature-score")).to_have_text(interval)
    screenshot(page, "features-browser")

    # A feature under the support floor reads "too rare to score", never a number.
    everything = app.get(f"/api/training/{tid}/features", params={"limit": 500}).json()["data"]
    rare = next(r for r in everything if r["score_state"] == "too_rare")
    assert rare["score"] is None and rare["score_low"] is None, rare
    card.get_by_test_id("features-search").fill(f"#{rare['index']}")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text(f"#{rare['index']}")
    expect(rows.first.get_by_test_id("feature-score")).to_have_text("too rare to score")
    assert not re.search(r"\d", rows.first.get_by_test_id("feature-score").inner_text())
    rows.first.click()
    modal = page.get_by_test_id("feature-modal")
    expect(modal.get_by_test_id("feature-score-tile")).to_contain_text("too rare to score")
    expect(modal.get_by_test_id("feature-support")).to_contain_text(
        f"{rare['active_samples']} samples, {rare['held_out_positives']} held-out positives"
    )
    page.keyboard.press("Escape")
    card.get_by_test_id("features-search").fill("")

    # Sort by feature id ascending, then search by a feature's id.
    card.get_by_test_id("features-sort").select_option("index")
    card.get_by_test_id("features-order").click()
    first = app.get(f"/api/training/{tid}/features", params={"sort_by": "index", "order": "asc", "limit": 1}).json()
    expect(rows.first).to_contain_text(f"#{first['data'][0]['index']}")
    card.get_by_test_id("features-search").fill("zzzz-no-such-feature")
    expect(card).to_contain_text("No features match your search")
    card.get_by_test_id("features-search").fill("")
    expect(rows.first).to_be_visible()

    rows.first.click()
    expect(modal.get_by_test_id("feature-example").first).to_be_visible()
    opened = first["data"][0]
    if opened["score_state"] == "scored":  # the score with its interval, and its support
        expect(modal.get_by_test_id("feature-score-tile")).to_contain_text(
            f"{fixed(opened['score'])}95% interval {fixed(opened['score_low'])}–{fixed(opened['score_high'])}"
        )
    expect(modal.get_by_test_id("feature-support")).to_contain_text(
        f"{opened['active_samples']} samples, {opened['held_out_positives']} held-out positives"
    )
    modal.get_by_role("tab", name="logit lens").click()
    expect(modal.get_by_test_id("logit-row")).to_have_count(20)
    modal.get_by_role("tab", name="correlations").click()
    expect(modal.get_by_test_id("correlation-row").first).to_be_visible(timeout=30_000)
    modal.get_by_role("tab", name="ablation").click()
    modal.get_by_test_id("ablation-run").click()
    expect(modal.get_by_test_id("feature-ablation")).to_contain_text("Perplexity Change", timeout=60_000)
    modal.get_by_role("tab", name="try text").click()
    modal.get_by_test_id("try-text-input").fill("def main():\n    return 0")
    modal.get_by_test_id("try-text-run").click()
    expect(modal.get_by_test_id("try-text-result")).to_be_visible(timeout=60_000)
    screenshot(page, "features-detail")

    index = int(modal.locator("h2").first.inner_text().split("#")[1])
    modal.get_by_test_id("feature-label").fill("My favourite feature")
    modal.get_by_test_id("feature-label").press("Enter")
    modal.get_by_test_id("feature-favorite").click()
    wait_until(
        lambda: app.get(f"/api/training/{tid}/features/{index}").json()["data"]["is_favorite"],
        timeout=10,
        what="the favourite saved",
    )
    detail = app.get(f"/api/training/{tid}/features/{index}").json()["data"]
    assert detail["name"] == "My favourite feature"
    page.keyboard.press("Escape")
    card.get_by_test_id("features-search").fill("my favourite")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("My favourite feature")

    card.get_by_test_id("features-view-map").click()
    expect(card.get_by_test_id("map-point")).to_have_count(summary["alive"])
    # The correlation matrix: the most frequent features, cells equal to the API's matrix.
    matrix = app.get(f"/api/training/{tid}/features/correlation-matrix", params={"top": 30}).json()["data"]
    n = len(matrix["features"])
    expect(card.get_by_test_id("corr-cell")).to_have_count(n * n)
    strongest = max(abs(matrix["matrix"][i][j]) for i in range(n) for j in range(i + 1, n))
    card.get_by_test_id("corr-threshold").fill("0")
    expect(card.get_by_test_id("corr-pairs")).to_contain_text(f"{strongest:.3f}")
    screenshot(page, "features-map")
    card.get_by_test_id("map-point").first.click()
    expect(page.get_by_test_id("feature-modal")).to_be_visible()
    problems.assert_none()


def test_a_matryoshka_saes_browser_and_map_filter_by_group_and_its_pages_show_it(demo_appliance, open_page) -> None:
    """A Matryoshka SAE's prefix groups: the filter lists one group's features (the map too), each row,
    the feature page and the steering picker name a feature's group."""
    app, model, dataset = demo_appliance
    widths = [32, 96, 256]
    response = app.post(
        "/api/training/start",
        json={
            "model_id": model["id"],
            "dataset_id": dataset["id"],
            "layer": 2,
            "encoder_type": "matryoshka_batchtopk",
            "max_samples": 200,
            "context_length": 64,
            "hyperparameters": {
                "k": 16,
                "expansion_factor": 2,
                "batch_size": 256,
                "total_steps": 60,
                "matryoshka_widths": widths,
                "log_every": 20,
            },
        },
    )
    tid = app.completed(response, timeout=300)["target"]["id"]
    app.completed(app.post("/api/features/extract", json={"training_id": tid, "eval_samples": 64}), timeout=300)

    page, _ = open_page(app.url, "/features")
    card = page.get_by_test_id("features-card")
    rows = card.get_by_test_id("feature-row")
    expect(rows.first).to_be_visible(timeout=30_000)
    card.get_by_test_id("features-group").select_option("1")
    expected = app.get(f"/api/training/{tid}/features", params={"group": 1}).json()["meta"]["pagination"]["total"]
    expect(card.get_by_test_id("features-count")).to_contain_text(f"of {expected:,} features")
    indices = [int(re.search(r"#(\d+)", text).group(1)) for text in rows.all_inner_texts()]
    assert indices and all(32 <= i < 96 for i in indices), indices
    expect(rows.first.get_by_test_id("feature-group")).to_have_text("G1")
    rows.first.click()
    expect(page.get_by_test_id("feature-modal")).to_contain_text(f"Feature #{indices[0]} • Matryoshka group 1")
    page.keyboard.press("Escape")
    card.get_by_test_id("features-view-map").click()
    points = app.get(f"/api/training/{tid}/features/map", params={"group": 1}).json()["data"]
    if points:  # a map needs enough live features
        expect(card.get_by_test_id("map-point")).to_have_count(len(points))
    screenshot(page, "features-matryoshka-group")

    page.goto(app.url + "/steering")
    page.get_by_test_id("steering-sae-select").select_option(tid)
    page.get_by_test_id("steering-search").fill(f"#{indices[0]}")
    result = page.locator(f'[data-testid="steering-search-result"][data-index="{indices[0]}"]')
    expect(result.get_by_test_id("feature-group")).to_have_text("G1")
    result.click()
    expect(page.get_by_test_id(f"steering-feature-{indices[0]}").get_by_test_id("feature-group")).to_have_text("G1")
