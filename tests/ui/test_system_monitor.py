"""The system monitor in the browser: header summary and charts from real samples only."""

from __future__ import annotations

import re
from pathlib import Path

from playwright.sync_api import expect

from tests.test_platform import make_jetson_root
from tests.test_system_monitoring import _fake_tegrastats
from tests.ui.conftest import DIST, screenshot


def test_monitor_on_this_machine(make_appliance, open_page) -> None:
    app = make_appliance({"MISTUDIO_WEBUI_DIR": str(DIST), "MISTUDIO_METRICS_INTERVAL_S": "0.5"})
    app.start_api()
    app.start_worker()
    page, _ = open_page(app.url)
    summary = page.get_by_test_id("system-summary")
    expect(summary).to_contain_text(re.compile(r"RAM \d+\.\d/\d+\.\d GB"), timeout=10_000)
    summary.click()
    monitor = page.get_by_test_id("system-monitor")
    expect(monitor.get_by_test_id("chart-cpu")).to_contain_text("%", timeout=10_000)
    expect(monitor.get_by_test_id("chart-memory")).to_contain_text("GB")
    expect(monitor.locator("[data-testid=chart-cpu] polyline")).to_have_count(1)
    # This VM has no GPU, sensors or rails: the monitor says so instead of drawing anything.
    for empty in ("gpu", "temperature", "power"):
        expect(monitor.get_by_test_id(f"chart-{empty}")).to_contain_text("Not reported by this device")
    expect(monitor.get_by_test_id("chart-processes")).to_contain_text(re.compile(r"\d+ MB"))
    page.wait_for_timeout(1200)
    screenshot(page, "system-monitor-cpu")
    page.keyboard.press("Escape")
    expect(monitor).to_be_hidden()


def test_monitor_on_a_simulated_jetson(make_appliance, open_page, tmp_path: Path) -> None:
    script, _ = _fake_tegrastats(tmp_path)
    app = make_appliance(
        {
            "MISTUDIO_WEBUI_DIR": str(DIST),
            "MISTUDIO_METRICS_INTERVAL_S": "0.5",
            "MISTUDIO_HOST_ROOT": str(make_jetson_root(tmp_path / "host")),
            "MISTUDIO_TEGRASTATS": str(script),
        },
        name="jetson",
    )
    app.start_api()
    app.start_worker()
    page, _ = open_page(app.url)
    expect(page.get_by_test_id("device-name")).to_have_text("NVIDIA Jetson Orin Nano Developer Kit", timeout=10_000)
    summary = page.get_by_test_id("system-summary")
    expect(summary).to_contain_text("RAM 2.2/7.4 GB", timeout=10_000)
    expect(summary).to_contain_text("GPU 42%")
    expect(summary).to_contain_text("48°C")  # tj@47.5C, the hottest sensor
    summary.click()
    modal = page.get_by_test_id("system-monitor-modal")
    expect(modal).to_contain_text("Orin (T234) • L4T 36.3.0 • JetPack 6.0")
    expect(modal).to_contain_text("unified memory")
    monitor = page.get_by_test_id("system-monitor")
    expect(monitor.get_by_test_id("chart-gpu")).to_contain_text("42% @ 612 MHz")
    expect(monitor.get_by_test_id("chart-temperature")).to_contain_text("tj 47.5°C")
    expect(monitor.get_by_test_id("chart-power")).to_contain_text("VDD_IN 4852 (avg 4852) mW")
    page.wait_for_timeout(1500)
    screenshot(page, "system-monitor-jetson")
