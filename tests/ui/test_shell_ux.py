"""The shell's rough edges (issue 21, point 12): the jobs panel leads each row with the time it sorts by,
and an address that names no tab shows a not-found page with links to the tabs."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import expect

from tests.support import Appliance, appliance_at, started
from tests.ui.conftest import DIST, SCREEN_DIR

SHOTS = SCREEN_DIR


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Appliance]:
    yield from started(appliance_at(tmp_path_factory.mktemp("shell-ux"), {"MISTUDIO_WEBUI_DIR": str(DIST)}))


def _shot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.set_viewport_size({"width": 1440, "height": 900})
    page.screenshot(path=str(SHOTS / f"{name}.png"))


def test_point12_jobs_panel_shows_the_time_it_sorts_by(app: Appliance, open_page) -> None:
    """A job queued earlier can start later than one queued after it (a heavy job waits for the heavy
    lane; an interactive one runs at once). The panel sorts by creation, so each row leads with its
    queue time; what happened since (started, ended) follows it."""
    first = app.selftest(steps=60, delay_ms=100, lane="heavy")
    app.wait_status(first, "running")
    waiting = app.selftest(steps=2000, delay_ms=50, lane="heavy")
    quick = app.selftest(steps=1, delay_ms=0)  # queued after `waiting`, started (and ended) before it
    app.wait_status(quick, "completed")
    app.wait_status(waiting, "running", timeout=60)
    jobs = {job_id: app.job(job_id) for job_id in (first, waiting, quick)}
    assert jobs[waiting]["created_at"] < jobs[quick]["created_at"] < jobs[waiting]["started_at"]

    page, _ = open_page(app.url, "/datasets")
    page.get_by_test_id("jobs-indicator").click()
    panel = page.get_by_test_id("jobs-panel")
    rows = panel.get_by_test_id("job-row")
    expect(rows).to_have_count(3)
    expect(panel.locator(f'[data-job-id="{waiting}"]')).to_have_attribute("data-status", "running")
    order = [rows.nth(i).get_attribute("data-job-id") for i in range(3)]
    assert order == [quick, waiting, first]  # newest first by creation
    for i, job_id in enumerate(order):
        queued = rows.nth(i).get_by_test_id("job-queued")
        # The time each row leads with is the one the list is sorted by.
        assert queued.get_attribute("datetime") == jobs[job_id]["created_at"]
        expect(queued).to_have_text(re.compile(r"^queued (just now|\d+ min ago)$"))
    expect(panel.locator(f'[data-job-id="{waiting}"]').get_by_test_id("job-times")).to_contain_text("• started")
    expect(panel.locator(f'[data-job-id="{quick}"]').get_by_test_id("job-times")).to_contain_text("• ended")
    times = panel.locator(f'[data-job-id="{waiting}"]').get_by_test_id("job-times")
    assert "Queued " in times.get_attribute("title") and "Started " in times.get_attribute("title")
    _shot(page, "jobs-panel")
    app.post(f"/api/jobs/{waiting}/cancel")


def test_point12_unknown_address_shows_not_found_with_links_to_the_tabs(app: Appliance, open_page) -> None:
    page, _ = open_page(app.url, "/no-such-page")
    found = page.get_by_test_id("not-found")
    expect(found).to_be_visible()
    expect(found).to_contain_text("Page not found")
    expect(page.get_by_test_id("not-found-path")).to_have_text("/no-such-page")
    expect(page).to_have_url(re.compile(r"/no-such-page$"))  # the address stays what the user typed
    expect(page.get_by_test_id("tab-datasets")).to_have_count(0)  # not the Datasets tab under a bogus address
    for tab in ("datasets", "models", "training", "features", "steering"):
        expect(page.get_by_role("tab", name=tab.capitalize())).to_have_attribute("aria-selected", "false")
        expect(page.get_by_test_id(f"not-found-link-{tab}")).to_have_attribute("href", f"/{tab}")
    _shot(page, "not-found")
    # A link goes to its tab inside the app, and back returns to the not-found page.
    page.get_by_test_id("not-found-link-training").click()
    expect(page).to_have_url(re.compile(r"/training$"))
    expect(page.get_by_test_id("tab-training")).to_be_visible()
    page.go_back()
    expect(page.get_by_test_id("not-found")).to_be_visible()
    # `/` is still the Datasets tab; an unknown API path keeps its JSON 404.
    page.goto(app.url + "/")
    expect(page.get_by_test_id("tab-datasets")).to_be_visible()
    missing = app.get("/api/no-such-thing")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "NOT_FOUND"
