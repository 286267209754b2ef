"""Explain & score in a real browser, against a fake OpenAI-compatible explainer and judge on loopback
(tests/fakejudge.py: its rule is its own): the settings (the key write-only), a run that is cancelled
while a call hangs and then continued, the result summary, the explanations and their detection/fuzzing
scores in the browser and in the feature modal, with the contexts the judge saw."""

from __future__ import annotations

import json
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.fakejudge import FakeJudge
from tests.support import wait_until
from tests.ui.conftest import screenshot, train_small_topk

KEY = "sk-ui-secret-4242"
TOP = 4
PER_CLASS = 5


@pytest.fixture
def judge():
    fake = FakeJudge()
    yield fake
    fake.shutdown()


def test_explain_cancel_continue_and_the_judged_examples(demo_appliance, open_page, judge) -> None:
    app, model, dataset = demo_appliance
    tid = train_small_topk(app, model, dataset)
    app.completed(app.post("/api/features/extract", json={"training_id": tid, "eval_samples": 150}), timeout=300)

    page, problems = open_page(app.url, "/features")
    card = page.get_by_test_id("features-card")
    expect(card.get_by_test_id("features-summary")).to_be_visible(timeout=30_000)
    card.get_by_test_id("explain-toggle").click()
    panel = card.get_by_test_id("explain-panel")
    # A local explainer is any ready model on the appliance (else the SAE's own).
    panel.get_by_test_id("explain-provider").select_option("local")
    options = panel.get_by_test_id("explain-local-model").locator("option")
    expect(options).to_have_text(["This SAE's model", model["name"]])
    panel.get_by_test_id("explain-provider").select_option("openai")
    panel.get_by_test_id("explain-endpoint").fill(judge.url)
    panel.get_by_test_id("explain-model").fill("judge-1")
    panel.get_by_test_id("explain-key").fill(KEY)
    panel.locator("#explain-concurrency").fill("1")
    panel.get_by_test_id("explain-examples").fill(str(PER_CLASS))
    panel.get_by_test_id("explain-save").click()
    expect(page.get_by_text("Explainer settings saved")).to_be_visible()
    expect(panel).to_contain_text("a key is saved (write-only)")
    stored = app.get("/api/settings/labeling").json()["data"]
    assert stored["examples_per_class"] == PER_CLASS and stored["concurrency"] == 1 and KEY not in json.dumps(stored)

    # The second feature's explain call hangs: cancel the run there, then let the call answer.
    judge.hold_at = 2
    panel.get_by_test_id("explain-top").fill(str(TOP))
    panel.get_by_test_id("explain-start").click()
    expect(panel.get_by_test_id("explain-progress")).to_be_visible()
    wait_until(judge.holding.is_set, timeout=60, what="the second explain call")
    with page.expect_response(lambda r: r.url.endswith("/cancel") and r.request.method == "POST") as answer:
        panel.get_by_test_id("explain-cancel").click()
    assert answer.value.ok, answer.value.text()
    first = _explain_job(app, tid)
    judge.release.set()
    expect(panel.get_by_test_id("explain-result")).to_contain_text("Last run cancelled", timeout=60_000)
    screenshot(page, "explain-cancelled")
    done_first = {r["index"] for r in _explained(app, tid)}
    assert 1 <= len(done_first) < TOP, done_first

    # Continue resumes: features done before the cancel come from the cache, the others are explained now.
    panel.get_by_test_id("explain-continue").click()
    expect(panel.get_by_test_id("explain-result")).to_contain_text("Last run completed", timeout=120_000)
    second = _explain_job(app, tid)
    assert second["id"] != first["id"]
    result = second["result"]
    assert result["requested"] == TOP and result["cached"] >= 1 and not result["failed"], result
    assert len(_explained(app, tid)) == TOP
    expect(panel.get_by_test_id("explain-summary")).to_contain_text(
        f"{result['requested']} requested • {result['explained']} explained • {result['scored']} scored"
        f" • {result['cached']} cached"
    )
    assert set(judge.keys) == {f"Bearer {KEY}"}

    # The browser shows each explanation with its scores, sorted by detection's lower bound.
    card.get_by_test_id("features-sort").select_option("detection")
    best = app.get(f"/api/training/{tid}/features", params={"sort_by": "detection", "limit": 1}).json()["data"][0]
    assert best["detection"] is not None and best["llm_label"].startswith("the token"), best
    rows = card.get_by_test_id("feature-row")
    expect(rows.first).to_contain_text(f"#{best['index']}")
    expect(rows.first).to_contain_text(best["llm_label"])
    expect(rows.first.get_by_test_id("feature-judge-tags")).to_contain_text(
        f"detection {best['detection']:.2f} ({best['detection_low']:.2f}–{best['detection_high']:.2f})"
    )
    screenshot(page, "explain-browser")

    # The modal: the explanation, its method, both scores with intervals, and what the judge saw.
    rows.first.click()
    modal = page.get_by_test_id("feature-modal")
    modal.get_by_role("tab", name="explanations").click()
    (shown,) = app.get(f"/api/training/{tid}/features/{best['index']}/explanations").json()["data"]
    card_ = modal.get_by_test_id("explanation")
    expect(card_.get_by_test_id("explanation-text")).to_have_text(shown["explanation"])
    expect(card_.get_by_test_id("explanation-method")).to_contain_text(shown["method"])
    for method in ("detection", "fuzzing"):
        score = shown[method]
        block = card_.get_by_test_id(f"judge-{method}")
        expect(block).to_contain_text(f"{score['balanced_accuracy']:.2f}")
        expect(block).to_contain_text(f"95% interval {score['low']:.2f}–{score['high']:.2f}")
        block.get_by_test_id(f"judge-{method}-toggle").click()
        contexts = block.get_by_test_id("judged-context")
        expect(contexts).to_have_count(len(score["examples"]))
        assert len(score["examples"]) == 2 * PER_CLASS
        first_example = score["examples"][0]
        expect(contexts.first.locator("[data-highlighted]")).to_have_count(len(first_example["highlighted"]))
        truth = {"detection": ("activating", "not activating"), "fuzzing": ("correct highlights", "random highlights")}
        expect(contexts.first).to_contain_text(f"truth: {truth[method][0 if first_example['truth'] else 1]}")
    screenshot(page, "explain-modal")
    assert KEY not in page.content()
    problems.assert_none()


def _explain_job(app, tid: str) -> dict[str, Any] | None:
    jobs = app.get("/api/jobs", params={"limit": 50}).json()["data"]
    return next((j for j in jobs if j["kind"] == "features.explain" and j["target"]["id"] == tid), None)


def _explained(app, tid: str) -> list[dict[str, Any]]:
    rows = app.get(f"/api/training/{tid}/features", params={"limit": 500}).json()["data"]
    return [r for r in rows if r["llm_label"]]
