"""The Steering tab in a real browser: on a demo-model SAE whose features were extracted, search and
add two features, set their coefficients (a quick button and the keyboard on the slider), generate a
comparison that streams both sides over SSE, check the texts and the metric tiles against the job's
result, then save the settings as a preset, clear them and load the preset back."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

from playwright.sync_api import expect

from tests.support import wait_until
from tests.ui.conftest import screenshot, train_small_topk


def _fixed(value: float, digits: int) -> str:
    """JavaScript's Number.prototype.toFixed: the exact binary value, ties away from zero."""
    return str(Decimal(value).quantize(Decimal(1).scaleb(-digits), rounding=ROUND_HALF_UP))


def _tiles(metrics: dict) -> dict[str, str]:
    """What the four tiles show for the API's metrics (ComparisonMetrics.tsx)."""
    kl, delta = metrics["kl_divergence"], metrics["perplexity_delta"]
    similarity, overlap = metrics["semantic_similarity"], metrics["word_overlap"]
    return {
        "kl": "—" if kl is None else _fixed(kl, 4),
        "perplexity": "—" if delta is None else ("+" if delta > 0 else "") + _fixed(delta, 2),
        "similarity": "—" if similarity is None else _fixed(100 * similarity, 1) + "%",
        "overlap": "—" if overlap is None else _fixed(100 * overlap, 1) + "%",
    }


def test_search_steer_stream_metrics_and_presets(demo_appliance, open_page) -> None:
    app, model, dataset = demo_appliance
    tid = train_small_topk(app, model, dataset)

    # Before extraction the SAE cannot steer: the tab says so.
    page, problems = open_page(app.url, "/steering")
    tab = page.get_by_test_id("tab-steering")
    expect(tab).to_contain_text("No SAEs to steer yet")
    expect(tab).to_contain_text("extract its features")

    response = app.post("/api/features/extract", json={"training_id": tid, "eval_samples": 80})
    job = app.wait_status(response.json()["data"]["job_id"], "completed", "failed", timeout=300)
    assert job["status"] == "completed", job["error"]
    first, second = app.get(f"/api/training/{tid}/features", params={"sort_by": "frequency", "limit": 2}).json()["data"]

    # The features.updated event brings the SAE in without a reload.
    card = page.get_by_test_id("steering-card")
    expect(card).to_be_visible(timeout=30_000)
    card.get_by_test_id("steering-sae-select").select_option(tid)
    expect(card.get_by_test_id("steering-sae-chips")).to_contain_text(model["name"])
    expect(page.get_by_test_id("steering-model")).to_contain_text(model["name"])
    expect(page.get_by_text("No features selected. Search and add features above.")).to_be_visible()
    generate = page.get_by_test_id("steering-generate")
    expect(generate).to_be_disabled()

    # Search (by #id, then by plain id) and add two features; the search clears after each.
    search = page.get_by_test_id("steering-search")
    for query, feature in ((f"#{first['index']}", first), (str(second["index"]), second)):
        search.fill(query)
        result = page.locator(f'[data-testid="steering-search-result"][data-index="{feature["index"]}"]')
        expect(result).to_contain_text(feature["label"])
        result.click()
        expect(search).to_have_value("")
        expect(page.get_by_test_id(f"steering-feature-{feature['index']}")).to_contain_text(f"#{feature['index']}")
    expect(page.get_by_test_id("steering-selected-count")).to_contain_text("Selected Features (2)")
    # No duplicates: an added feature shows as "Added" and cannot be added again.
    search.fill(f"#{first['index']}")
    again = page.locator(f'[data-testid="steering-search-result"][data-index="{first["index"]}"]')
    expect(again).to_be_disabled()
    expect(again).to_contain_text("Added")
    search.fill("")
    expect(page.get_by_test_id("steering-vector")).to_contain_text("Manipulating 2 features")

    tile1 = page.get_by_test_id(f"steering-feature-{first['index']}")
    tile2 = page.get_by_test_id(f"steering-feature-{second['index']}")
    expect(tile1.get_by_test_id("steering-coefficient")).to_have_text("0.00")
    tile1.get_by_role("button", name="Amplify").click()
    expect(tile1.get_by_test_id("steering-coefficient")).to_have_text("2.00")
    tile2.get_by_test_id("steering-slider").focus()
    for _ in range(15):
        page.keyboard.press("ArrowLeft")
    expect(tile2.get_by_test_id("steering-coefficient")).to_have_text("-1.50")

    page.get_by_test_id("steering-example").click()
    prompt = page.get_by_test_id("steering-prompt").input_value()
    assert prompt
    expect(page.get_by_test_id("steering-prompt-count")).to_contain_text(f"{len(prompt)} characters")
    page.get_by_test_id("steering-max-tokens").fill("24")
    page.get_by_test_id("steering-seed").fill("7")
    expect(page.get_by_test_id("steering-layer-value")).to_have_text("2")
    expect(generate).to_be_enabled()

    with page.expect_response(lambda r: r.url.endswith("/api/steering/generate")) as posted:
        generate.click()
    assert posted.value.status == 202, posted.value.text()
    job_id = posted.value.json()["data"]["job_id"]
    job = app.wait_status(job_id, "completed", "failed", timeout=120)
    assert job["status"] == "completed", job["error"]
    result = job["result"]
    assert result["seed"] == 7 and result["intervention_layer"] == 2
    assert [(f["index"], f["coefficient"], f["mode"]) for f in result["features"]] == [
        (first["index"], 2.0, "add"),
        (second["index"], -1.5, "add"),
    ]
    assert result["timing"]["generated_tokens"] <= 24

    # Both sides streamed token by token over SSE, and end as the job's result.
    for side in ("unsteered", "steered"):
        panel = page.get_by_test_id(f"steering-output-{side}")
        expect(panel).to_have_attribute("data-status", "completed", timeout=30_000)
        expect(panel).to_have_attribute("data-streamed", str(len(result[side]["tokens"])))
        assert len(result[side]["tokens"]) > 0
        assert panel.get_by_test_id("steering-text").text_content() == result[side]["text"]
    expect(generate).to_be_enabled()
    if result["first_divergence"] is not None:
        assert page.locator('[data-testid="diff-added"], [data-testid="diff-removed"]').count() > 0
        page.get_by_test_id("steering-view-unified").click()
        expect(page.get_by_test_id("steering-output-unified")).to_be_visible()
        page.get_by_test_id("steering-view-diff").click()

    metrics = page.get_by_test_id("steering-metrics")
    for name, shown in _tiles(result["metrics"]).items():
        expect(metrics.get_by_test_id(f"steering-metric-{name}")).to_contain_text(shown)
    delta = result["metrics"]["perplexity_delta"]
    caption = (
        "No tokens to score"
        if delta is None
        else "Higher uncertainty"
        if delta > 0
        else "Lower uncertainty"
        if delta < 0
        else "No change"
    )
    expect(metrics.get_by_test_id("steering-metric-perplexity")).to_contain_text(caption)
    expect(metrics.get_by_test_id("steering-shift")).to_have_count(len(result["metrics"]["token_probability_shifts"]))
    timing = metrics.get_by_test_id("steering-timing")
    expect(timing).to_contain_text(result["timing"]["device"])
    # Each side's own speed and the steering overhead, as the API answered them.
    t = result["timing"]
    expect(timing).to_contain_text(f"unsteered {_fixed(t['unsteered_ms_per_token'], 1)} ms/token")
    expect(timing).to_contain_text(f"steered {_fixed(t['steered_ms_per_token'], 1)} ms/token")
    expect(timing).to_contain_text(f"steering overhead ×{_fixed(t['overhead_ratio'], 2)}")
    expect(page.get_by_test_id("steering-vector-norm")).to_have_text(_fixed(result["steering_vector_norm"], 3))

    # Save the settings as a preset, favourite it, clear everything and load it back.
    presets = page.get_by_test_id("steering-presets")
    presets.get_by_test_id("steering-preset-save-open").click()
    presets.get_by_test_id("steering-preset-name").fill("Docstring push")
    presets.get_by_test_id("steering-preset-description").fill("two features from the UI test")
    presets.get_by_test_id("steering-preset-save").click()
    row = presets.get_by_test_id("steering-preset").filter(has_text="Docstring push")
    expect(row).to_contain_text("2 features • Layer 2")
    saved = [
        p
        for p in app.get("/api/steering/presets", params={"training_id": tid}).json()["data"]
        if p["name"] == "Docstring push"
    ]
    assert len(saved) == 1
    config = saved[0]["config"]
    assert [(f["index"], f["coefficient"], f["mode"]) for f in config["features"]] == [
        (first["index"], 2.0, "add"),
        (second["index"], -1.5, "add"),
    ]
    assert (config["max_tokens"], config["seed"], config["prompt"], config["training_id"]) == (24, 7, prompt, tid)
    row.get_by_test_id("steering-preset-star").click()
    wait_until(
        lambda: app.get(f"/api/steering/presets/{saved[0]['id']}").json()["data"]["is_favorite"],
        timeout=10,
        what="the favourite saved",
    )

    page.get_by_test_id("steering-clear").click()
    expect(page.get_by_test_id("steering-selected-count")).to_contain_text("Selected Features (0)")
    expect(generate).to_be_disabled()
    page.get_by_test_id("steering-max-tokens").fill("100")
    row.get_by_test_id("steering-preset-load").click()
    expect(page.get_by_test_id("steering-selected-count")).to_contain_text("Selected Features (2)")
    expect(tile1.get_by_test_id("steering-coefficient")).to_have_text("2.00")
    expect(tile2.get_by_test_id("steering-coefficient")).to_have_text("-1.50")
    expect(tile1).to_contain_text(first["label"])
    expect(page.get_by_test_id("steering-max-tokens")).to_have_value("24")
    expect(page.get_by_test_id("steering-seed")).to_have_value("7")
    expect(generate).to_be_enabled()
    screenshot(page, "steering")
    problems.assert_none()
