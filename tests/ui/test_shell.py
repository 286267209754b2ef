"""The shell in a real browser: tabs, live connection state, the jobs indicator, offline recovery."""

from __future__ import annotations

import re
import signal

from playwright.sync_api import expect

from tests.support import Appliance
from tests.ui.conftest import DIST, screenshot

TABS = {
    "datasets": ("Dataset Management", "No datasets yet"),
    "models": ("Model Management", "No models yet"),
    "training": ("Training", "No training jobs yet"),
    "features": ("Feature", "No completed trainings yet"),
    "steering": ("Model Steering", "No SAEs to steer yet"),
}


def test_shell_renders_and_connects(ui_appliance: Appliance, open_page) -> None:
    page, _ = open_page(ui_appliance.url)
    expect(page).to_have_title("MechInterp Studio")
    expect(page.get_by_text("MechInterp Studio", exact=True)).to_be_visible()
    expect(page.get_by_text("Edge AI Feature Discovery Platform")).to_be_visible()
    status = page.get_by_test_id("connection-status")
    expect(status).to_have_attribute("data-state", "connected", timeout=10_000)
    expect(status).to_contain_text("API Connected")
    device = ui_appliance.get("/api/system/info").json()["data"]["device_name"]
    expect(page.get_by_test_id("device-name")).to_have_text(device)
    paint = page.evaluate("() => (performance.getEntriesByName('first-contentful-paint')[0] || {}).startTime || null")
    assert paint is not None  # it painted; how soon is a property of the machine, not asserted in a test
    assert page.get_by_role("tab").count() == 5


def test_tabs_switch_reload_and_show_empty_states(ui_appliance: Appliance, open_page) -> None:
    page, _ = open_page(ui_appliance.url)
    for name, (title, empty) in TABS.items():
        page.get_by_role("tab", name=name.capitalize()).click()
        expect(page).to_have_url(re.compile(rf"/{name}$"))
        tab = page.get_by_test_id(f"tab-{name}")
        expect(tab).to_be_visible()
        expect(tab).to_contain_text(title)
        expect(tab).to_contain_text(empty)
        expect(page.get_by_role("tab", name=name.capitalize())).to_have_attribute("aria-selected", "true")
        expect(page.get_by_test_id("connection-status")).to_have_attribute("data-state", "connected")
        screenshot(page, f"tab-{name}")
    # A client-side route survives a reload and the browser's back button.
    page.reload()
    expect(page.get_by_test_id("tab-steering")).to_be_visible()
    page.go_back()
    expect(page.get_by_test_id("tab-features")).to_be_visible()
    page.goto(ui_appliance.url + "/models")
    expect(page.get_by_test_id("tab-models")).to_be_visible()


def test_jobs_indicator_follows_a_job_live_and_cancels_it(ui_appliance: Appliance, open_page) -> None:
    page, _ = open_page(ui_appliance.url)
    indicator = page.get_by_test_id("jobs-indicator")
    expect(page.get_by_test_id("connection-status")).to_have_attribute("data-state", "connected", timeout=10_000)
    expect(indicator).to_have_attribute("data-running", "0")
    job_id = ui_appliance.selftest(steps=400, delay_ms=50)  # started outside the UI: SSE brings it in
    expect(indicator).to_have_attribute("data-running", "1", timeout=5_000)
    indicator.click()
    row = page.locator(f'[data-testid="job-row"][data-job-id="{job_id}"]')
    expect(row).to_have_attribute("data-status", "running")
    expect(row).to_contain_text(re.compile(r"step \d+/400"))
    first = row.inner_text()
    page.wait_for_timeout(600)
    assert row.inner_text() != first, "progress did not move"
    screenshot(page, "jobs-panel")
    row.get_by_test_id("job-cancel").click()
    expect(row).to_have_attribute("data-status", "cancelled", timeout=3_000)
    expect(indicator).to_have_attribute("data-running", "0")
    assert ui_appliance.job(job_id)["status"] == "cancelled"


def test_offline_then_recovery(ui_appliance: Appliance, open_page) -> None:
    page, problems = open_page(ui_appliance.url)
    status = page.get_by_test_id("connection-status")
    expect(status).to_have_attribute("data-state", "connected", timeout=10_000)
    with problems.expected():  # the server is down on purpose: failed requests are the point
        ui_appliance.stop_proc(ui_appliance.api, signal.SIGTERM)
        expect(status).to_have_attribute("data-state", re.compile("reconnecting|offline"), timeout=10_000)
        expect(status).to_have_attribute("data-state", "offline", timeout=20_000)
        expect(status).to_contain_text("Offline")
        screenshot(page, "offline")
        ui_appliance.start_api()
        expect(status).to_have_attribute("data-state", "connected", timeout=20_000)
    # Live again: a new job shows up without a reload.
    job_id = ui_appliance.selftest(steps=100, delay_ms=50)
    expect(page.get_by_test_id("jobs-indicator")).to_have_attribute("data-running", "1", timeout=10_000)
    ui_appliance.post(f"/api/jobs/{job_id}/cancel")


def test_token_prompt_when_the_api_needs_a_token(make_appliance, open_page) -> None:
    app = make_appliance({"MISTUDIO_WEBUI_DIR": str(DIST), "MISTUDIO_TOKEN": "ui-t0ken"}, name="tok")
    app.start_api()
    app.start_worker()
    # The page's first API calls answer 401 on purpose; the UI must ask for the token.
    page, problems = open_page(app.url, expect_problems=True)
    prompt = page.get_by_test_id("token-prompt")
    expect(prompt).to_be_visible(timeout=10_000)
    screenshot(page, "token-prompt")
    prompt.locator("input").fill("ui-t0ken")
    prompt.get_by_role("button", name=re.compile("connect", re.I)).click()
    expect(prompt).to_be_hidden(timeout=5_000)
    problems.expecting = False
    status = page.get_by_test_id("connection-status")
    expect(status).to_have_attribute("data-state", "connected", timeout=10_000)
    job_id = app.selftest(steps=100, delay_ms=50)  # the event stream is authorised by the cookie
    expect(page.get_by_test_id("jobs-indicator")).to_have_attribute("data-running", "1", timeout=10_000)
    app.post(f"/api/jobs/{job_id}/cancel")
