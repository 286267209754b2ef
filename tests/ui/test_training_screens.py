"""The training card at 1440x900 in a real browser (issue 21, points 2 and 11): a paused card offers
Stop beside Resume; the log box follows its newest line unless the reader scrolled up; every checkpoint
row shows a loss; the charts carry labelled value and step ticks."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.support import Appliance, demo_kit, started_demo, wait_until
from tests.ui.conftest import DIST, SCREEN_DIR

SHOTS = SCREEN_DIR
NUMBER = re.compile(r"^-?[\d,]+(\.\d+)?k?$")


@pytest.fixture(scope="module")
def app(tmp_path_factory) -> Iterator[Appliance]:
    # Every checkpoint kept: the rows the checkpoint test reads are all the ones saved.
    yield from started_demo(
        tmp_path_factory,
        "training_screens",
        MISTUDIO_WEBUI_DIR=str(DIST),
        HF_HUB_OFFLINE="1",
        MISTUDIO_KEEP_CHECKPOINTS="0",
    )


def _start(app: Appliance, **hp: int) -> tuple[str, str]:
    """A small TopK SAE streamed from the demo model's layer 2: (training id, job id)."""
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
            "auto_save_interval": hp.pop("auto_save_interval", 0),
            "hyperparameters": {"k": 8, "expansion_factor": 2, "batch_size": 128, **hp},
        },
    )
    assert response.status_code == 202, response.text
    job = app.job(response.json()["data"]["job_id"])
    return job["target"]["id"], job["id"]


def _end(app: Appliance, job_id: str) -> None:
    """Free the heavy lane for the next test."""
    if app.job(job_id)["status"] in ("queued", "running", "paused"):
        app.post(f"/api/jobs/{job_id}/cancel")
    app.wait_status(job_id, "completed", "cancelled", "failed", timeout=120)


@pytest.fixture(scope="module")
def finished(app: Appliance) -> str:
    """A completed training whose auto-saves (every 15 steps) fall between its logged steps (every 10)."""
    tid, job_id = _start(app, total_steps=60, log_every=10, auto_save_interval=15)
    assert app.wait_status(job_id, "completed", "failed", timeout=300)["status"] == "completed"
    return tid


def _open(open_page, app: Appliance, tid: str):
    page, _ = open_page(app.url, "/training")
    page.set_viewport_size({"width": 1440, "height": 900})
    card = page.locator(f'[data-testid="training-card"][data-training-id="{tid}"]')
    expect(card).to_be_visible(timeout=30_000)
    return page, card


def _shot(page, name: str) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    page.screenshot(path=str(path))
    return path


def test_point2_a_paused_card_has_resume_and_stop_and_stop_ends_the_run(app: Appliance, open_page) -> None:
    tid, job_id = _start(app, total_steps=100_000, log_every=10)
    try:
        page, card = _open(open_page, app, tid)
        expect(card).to_have_attribute("data-status", "running", timeout=60_000)
        wait_until(lambda: app.get(f"/api/training/{tid}").json()["data"]["step"] >= 10, timeout=120, what="step 10")
        card.get_by_test_id("training-pause").click()
        expect(card).to_have_attribute("data-status", "paused", timeout=60_000)
        expect(card.get_by_test_id("training-resume")).to_be_visible()
        stop = card.get_by_test_id("training-stop")
        expect(stop).to_be_visible()
        expect(stop).to_have_text(re.compile("Stop"))
        card.evaluate("(e) => e.scrollIntoView({ block: 'center' })")
        _shot(page, "training-paused")

        stop.click()
        expect(card).to_have_attribute("data-status", "stopped", timeout=180_000)
        expect(card.get_by_test_id("training-export")).to_be_visible()
        expect(card.get_by_test_id("training-stop")).to_have_count(0)
    finally:
        _end(app, job_id)
    training = app.get(f"/api/training/{tid}").json()["data"]
    assert training["status"] == "stopped" and training["evaluation"]["explained_variance"] is not None


# The element of the log box that scrolls, and where it stands.
_SCROLLER = """(box) => {
  const el = [box, ...box.querySelectorAll('*')].find((e) => getComputedStyle(e).overflowY === 'auto');
  return { top: el.scrollTop, height: el.scrollHeight, client: el.clientHeight, lines: el.children.length,
           last: el.lastElementChild ? el.lastElementChild.getBoundingClientRect().bottom
                 - el.getBoundingClientRect().bottom : null };
}"""
_SCROLL_TO_TOP = """(box) => {
  const el = [box, ...box.querySelectorAll('*')].find((e) => getComputedStyle(e).overflowY === 'auto');
  el.scrollTop = 0;
}"""


def _lines(card) -> int:
    """The log lines the box holds (its scrolling element's children)."""
    return card.get_by_test_id("training-logs").evaluate(_SCROLLER)["lines"]


def test_point11_log_follows_the_newest_line_unless_scrolled_up(app: Appliance, open_page) -> None:
    tid, job_id = _start(app, total_steps=100_000, log_every=2, auto_save_interval=25)
    try:
        page, card = _open(open_page, app, tid)
        expect(card).to_have_attribute("data-status", "running", timeout=60_000)
        card.get_by_test_id("toggle-metrics").click()
        card.get_by_test_id("toggle-checkpoints").click()
        logs = card.get_by_test_id("training-logs")
        wait_until(lambda: _lines(card) > 20, timeout=120, what="more log lines than the box shows")
        for _ in range(2):  # as lines keep arriving, the box stays on the newest
            seen = _lines(card)
            wait_until(lambda seen=seen: _lines(card) > seen, timeout=60, what="a new log line")
            box = logs.evaluate(_SCROLLER)
            assert box["height"] > box["client"], box
            assert box["height"] - box["top"] - box["client"] < 4, box
            assert box["last"] is not None and box["last"] <= 1, box
        newest = app.get(f"/api/training/{tid}/metrics").json()["data"][-1]["step"]
        assert newest >= 40

        card.get_by_test_id("training-charts").evaluate("(e) => e.scrollIntoView({ block: 'start' })")
        _shot(page, "training-running")

        # Scrolled up to read: new lines do not pull the box back down.
        logs.evaluate(_SCROLL_TO_TOP)
        seen = _lines(card)
        wait_until(lambda: _lines(card) > seen + 2, timeout=60, what="new log lines")
        assert logs.evaluate(_SCROLLER)["top"] == 0
    finally:
        _end(app, job_id)


def test_point11_checkpoint_rows_show_the_loss_of_their_step(app: Appliance, finished: str, open_page) -> None:
    page, card = _open(open_page, app, finished)
    card.get_by_test_id("toggle-checkpoints").click()
    rows = card.get_by_test_id("checkpoint-row")
    expect(rows).to_have_count(4)
    texts = rows.all_inner_texts()
    assert [re.search(r"Step (\d+)", t).group(1) for t in texts] == ["15", "30", "45", "60"]
    assert all(re.search(r"Loss: \d+\.\d{4}", t) and "—" not in t for t in texts), texts


def test_point11_charts_have_value_and_step_ticks(app: Appliance, finished: str, open_page) -> None:
    page, card = _open(open_page, app, finished)
    card.get_by_test_id("toggle-metrics").click()
    for key in ("loss", "l0", "dead_latents", "explained_variance"):
        chart = card.get_by_test_id(f"chart-{key}")
        expect(chart.locator("svg polyline")).not_to_have_count(0, timeout=30_000)
        y_ticks = chart.get_by_test_id("y-tick")
        x_ticks = chart.get_by_test_id("x-tick")
        assert y_ticks.count() >= 3 and x_ticks.count() >= 3, key
        y_text, x_text = y_ticks.all_inner_texts(), x_ticks.all_inner_texts()
        assert all(NUMBER.match(t) for t in y_text + x_text), (key, y_text, x_text)
        steps = [float(t.replace(",", "")) for t in x_text]
        assert steps == sorted(steps) and steps[0] == 0 and steps[-1] <= 60, (key, x_text)
        values = [float(t.replace(",", "").replace("k", "e3")) for t in y_text]
        assert len(set(values)) == len(values), (key, y_text)
        # Readable: at least 11 px, inside the chart, and no two labels of an axis overlap.
        frame = chart.bounding_box()
        for ticks, lo, hi in ((x_ticks, "x", "width"), (y_ticks, "y", "height")):
            boxes = sorted((b[lo], b[lo] + b[hi]) for b in (t.bounding_box() for t in ticks.all()))
            assert all(a[1] <= b[0] + 0.5 for a, b in zip(boxes, boxes[1:])), (key, lo, boxes)
            assert boxes[0][0] >= frame[lo] - 1 and boxes[-1][1] <= frame[lo] + frame[hi] + 1, (key, lo, boxes)
        size = float(x_ticks.first.evaluate("(e) => parseFloat(getComputedStyle(e).fontSize)"))
        assert size >= 11, size
    card.get_by_test_id("training-charts").evaluate("(e) => e.scrollIntoView({ block: 'center' })")
    _shot(page, "training-charts")
