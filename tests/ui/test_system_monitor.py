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


def test_a_configured_total_shows_as_configured(make_appliance, open_page) -> None:
    """MISTUDIO_MEMORY_TOTAL_MB=8192 (a simulated Orin Nano 8 GB): the header and the monitor show 8.0 GB,
    say it is configured, name the host's own RAM and the budget derived from the 8 GB."""
    app = make_appliance(
        {"MISTUDIO_WEBUI_DIR": str(DIST), "MISTUDIO_METRICS_INTERVAL_S": "0.5", "MISTUDIO_MEMORY_TOTAL_MB": "8192"}
    )
    app.start_api()
    app.start_worker()
    host_gb = app.get("/api/system/info").json()["data"]["host_memory_mb"] / 1024
    page, _ = open_page(app.url)
    summary = page.get_by_test_id("system-summary")
    expect(summary).to_contain_text(re.compile(r"RAM \d+\.\d/8\.0 GB \(configured\)"), timeout=10_000)
    summary.click()
    monitor = page.get_by_test_id("system-monitor")
    expect(monitor.get_by_test_id("memory-configured")).to_contain_text(
        f"memory 8.0 GB, configured by MISTUDIO_MEMORY_TOTAL_MB (this host has {host_gb:.1f} GB)"
    )
    expect(monitor.get_by_test_id("memory-budget")).to_have_text("job memory budget 6.8 GB of 8.0 GB")
    expect(monitor.get_by_test_id("chart-memory")).to_contain_text(re.compile(r"/ 8\.0 GB \(configured\)"))
    screenshot(page, "system-monitor-configured-total")


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
