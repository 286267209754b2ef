"""Browser tests: Playwright driving Debian's chromium against a real appliance on 127.0.0.1."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support import REPO

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
DIST = REPO / "webui" / "dist"
ARTIFACTS = REPO / "test-artifacts" / "ui"
# The screens the docs show are re-taken only when asked (MISTUDIO_UPDATE_SCREENSHOTS=1), so a test run
# leaves the committed files alone.
SCREEN_DIR = REPO / "docs" / "screenshots" if os.environ.get("MISTUDIO_UPDATE_SCREENSHOTS") else ARTIFACTS / "screens"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


def _require(condition: bool, reason: str) -> None:
    # On CI the browser tests must run; on a developer machine without chromium they are skipped.
    if not condition:
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)


@pytest.fixture(scope="session")
def browser() -> Iterator:
    _require(Path(CHROMIUM).exists(), "Debian's chromium is not installed (./install.sh --dev installs it)")
    _require((DIST / "index.html").exists(), "webui/dist is missing")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        yield browser
        browser.close()


@dataclass
class Problems:
    """Console errors and failed requests seen by a page, outside windows where they are expected."""

    console_errors: list[str] = field(default_factory=list)
    failed_requests: list[str] = field(default_factory=list)
    expecting: bool = False

    @contextmanager
    def expected(self) -> Iterator[None]:
        self.expecting = True
        try:
            yield
        finally:
            self.expecting = False

    def assert_none(self) -> None:
        assert not self.console_errors, self.console_errors
        assert not self.failed_requests, self.failed_requests


@pytest.fixture
def open_page(browser):
    """Open a page on an appliance; fails the test on any console error or failed request."""
    pages = []

    def open_(url: str, path: str = "/", expect_problems: bool = False):
        context = browser.new_context(viewport={"width": 1440, "height": 1000})
        page = context.new_page()
        problems = Problems(expecting=expect_problems)

        def on_console(msg) -> None:
            if msg.type == "error" and not problems.expecting:
                problems.console_errors.append(msg.text)

        def on_failed(request) -> None:
            # An EventSource closed by navigation or teardown is aborted, not failed.
            if not problems.expecting and "ERR_ABORTED" not in (request.failure or ""):
                problems.failed_requests.append(f"{request.method} {request.url}: {request.failure}")

        page.on("console", on_console)
        page.on("pageerror", lambda exc: problems.console_errors.append(f"pageerror: {exc}"))
        page.on("requestfailed", on_failed)
        page.goto(url + path)
        pages.append((context, problems))
        return page, problems

    yield open_
    for context, problems in pages:
        context.close()
        problems.assert_none()


def screenshot(page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


@pytest.fixture
def ui_appliance(make_appliance):
    """API and worker serving the real built UI."""
    app = make_appliance({"MISTUDIO_WEBUI_DIR": str(DIST)})
    app.start_api()
    app.start_worker()
    return app


@pytest.fixture
def demo_appliance(make_appliance):
    """API and worker serving the built UI, with the demo kit ready: (app, model, dataset)."""
    from tests.support import demo_kit

    app = make_appliance({"MISTUDIO_WEBUI_DIR": str(DIST), "MISTUDIO_SEED_DEMO": "1", "HF_HUB_OFFLINE": "1"})
    app.start_api()
    app.start_worker()
    return (app, *demo_kit(app))


def train_small_topk(app, model: dict, dataset: dict) -> str:
    """A small TopK SAE on the demo model's layer 2 (seconds on a CPU); its training id."""
    response = app.post(
        "/api/training/start",
        json={
            "model_id": model["id"],
            "dataset_id": dataset["id"],
            "layer": 2,
            "encoder_type": "topk",
            "max_samples": 300,
            "context_length": 64,
            "hyperparameters": {"k": 8, "expansion_factor": 2, "batch_size": 256, "total_steps": 100, "log_every": 50},
        },
    )
    job = app.wait_status(response.json()["data"]["job_id"], "completed", "failed", timeout=300)
    assert job["status"] == "completed", job["error"]
    return job["target"]["id"]
