"""A page on another site cannot drive the appliance from a real browser (no token: the default).

Chromium sends these without a CORS preflight: ``no-cors`` POSTs with a text/plain, form or multipart
body, and form submissions. The attacker's page is served by a second server on another port of
127.0.0.1, which is another origin. Each attempt must reach the appliance and be refused, and nothing
may change.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.support import Appliance, free_port

ATTACK = """<!doctype html><html><head><meta charset="utf-8"><title>cat pictures</title></head><body>
<iframe name="sink"></iframe>
<form id="plain" method="POST" action="{app}/api/jobs/selftest" enctype="text/plain" target="sink">
  <input name='{{"steps": 1, "delay_ms": 0, "pad": "' value='"}}'>
</form>
<form id="urlencoded" method="POST" action="{app}/api/datasets/demo" target="sink"></form>
<script>
const body = '{{"steps": 1, "delay_ms": 0}}';
async function send(path, init) {{
  try {{
    await fetch("{app}" + path, {{mode: "no-cors", method: "POST", credentials: "include", ...init}});
    return "sent";
  }} catch (err) {{
    return String(err);
  }}
}}
window.attack = async () => {{
  const upload = new FormData();
  upload.append("file", new Blob(['{{"text": "planted"}}\\n']), "planted.jsonl");
  return [
    await send("/api/jobs/selftest", {{headers: {{"content-type": "text/plain"}}, body}}),
    await send("/api/jobs/selftest", {{headers: {{"content-type": "application/x-www-form-urlencoded"}}, body}}),
    await send("/api/jobs/selftest", {{body: new Blob([body])}}),
    await send("/api/datasets/upload", {{body: upload}}),
    await send("/api/models/demo", {{}}),
  ];
}};
</script></body></html>"""


@contextmanager
def serve_page(html: str) -> Iterator[str]:
    """The attacker's site: one page on another 127.0.0.1 port."""

    class Page(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            data = html.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Page)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _state(app: Appliance) -> tuple[int, list, list]:
    jobs = app.get("/api/jobs", params={"limit": 1}).json()["meta"]["pagination"]["total"]
    return jobs, app.get("/api/datasets").json()["data"], app.get("/api/models").json()["data"]


def _run_attack(page, app: Appliance) -> list[int]:
    """Every attempt on the page; the statuses the appliance answered them with."""
    statuses: list[int] = []
    page.on("response", lambda r: statuses.append(r.status) if r.url.startswith(app.url + "/api/") else None)
    results = page.evaluate("window.attack()")
    assert results == ["sent"] * 5, results
    for form in ("plain", "urlencoded"):
        with page.expect_response(lambda r: r.url.startswith(app.url + "/api/")):
            page.evaluate(f"document.getElementById('{form}').submit()")
    return statuses


def test_another_site_cannot_change_state(browser, make_appliance) -> None:
    app = make_appliance()
    app.start_api()
    app.start_worker()
    before = _state(app)
    assert before[0] == 0
    with serve_page(ATTACK.format(app=app.url)) as site:
        context = browser.new_context()
        try:
            page = context.new_page()
            page.goto(site + "/")
            statuses = _run_attack(page, app)
        finally:
            context.close()
    # All seven requests reached the appliance (so the test shows a refusal, not a browser's block)...
    assert len(statuses) == 7, statuses
    assert set(statuses) == {403}, statuses
    # ...and changed nothing: no job, no dataset, no model.
    assert _state(app) == before

    # From the appliance's own origin the browser's Origin passes, the wrong content type still does
    # not, and a JSON POST (what the UI sends) works.
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(app.url + "/")
        answered = page.evaluate("""async () => {
            const post = (type) => fetch('/api/jobs/selftest', {method: 'POST', headers: {'Content-Type': type},
                                                                body: JSON.stringify({steps: 1, delay_ms: 0})});
            const plain = await post('text/plain');
            const json = await post('application/json');
            return [plain.status, (await plain.json()).error.code, json.status, (await json.json()).data.job_id];
        }""")
    finally:
        context.close()
    assert answered[:3] == [415, "UNSUPPORTED_MEDIA_TYPE", 202], answered
    assert app.wait_status(answered[3], "completed")["status"] == "completed"
