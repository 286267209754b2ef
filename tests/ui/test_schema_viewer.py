"""The API reference (/schema) renders in a real browser with no request leaving the appliance."""

from __future__ import annotations

from urllib.parse import urlsplit

from tests.ui.conftest import ARTIFACTS, DIST


def screenshot_path():
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS / "schema-viewer.png"


def test_schema_viewer_renders_offline(browser, make_appliance) -> None:
    app = make_appliance({"MISTUDIO_WEBUI_DIR": str(DIST)})
    app.start_api()  # pages only: no worker needed
    here = urlsplit(app.url).netloc
    elsewhere: list[str] = []
    errors: list[str] = []

    def only_here(route) -> None:
        # As on a LAN without internet: anything for another host fails, and is recorded.
        if urlsplit(route.request.url).netloc != here:
            elsewhere.append(route.request.url)
            route.abort("internetdisconnected")
        else:
            route.continue_()

    context = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        context.route("**/*", only_here)
        page = context.new_page()
        page.on("console", lambda msg: msg.type == "error" and errors.append(msg.text))
        page.on("pageerror", lambda exc: errors.append(f"pageerror: {exc}"))
        page.goto(app.url + "/schema")
        # Swagger UI fetched the document and drew its operations.
        page.locator(".opblock-summary-path", has_text="/api/jobs/selftest").first.wait_for(timeout=30_000)
        assert page.locator(".opblock").count() > 20
        page.locator(".info .title", has_text="MechInterp Studio API").wait_for()
        page.screenshot(path=str(screenshot_path()))
    finally:
        context.close()
    assert elsewhere == [], elsewhere
    assert errors == [], errors
