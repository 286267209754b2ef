"""Every page the appliance serves works without internet: no script, style, font or icon from
another host (the appliance sits on a LAN that often has none)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from urllib.parse import urljoin, urlsplit

import pytest

from tests.support import REPO, Appliance

DIST = REPO / "webui" / "dist"
# src=, href=, CSS url(...) and @import: whatever makes a browser fetch something.
_REFERENCE = re.compile(r"""(?:\b(?:src|href)\s*=\s*["']?|url\(\s*["']?|@import\s+["'])([^"'\s)>]+)""", re.I)
PAGES = ("/", "/index.html", "/datasets", "/schema", "/schema/swagger", "/schema/no-such-page")


@pytest.fixture(scope="module")
def ui_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Appliance]:
    """The API alone (no worker is needed to serve pages), with the real built UI when there is one."""
    from tests.conftest import _appliance

    env = {"MISTUDIO_WEBUI_DIR": str(DIST)} if (DIST / "index.html").is_file() else {}
    app = _appliance(tmp_path_factory.mktemp("offline"), env)
    app.start_api()
    yield app
    app.stop()


def _references(text: str) -> list[str]:
    return [ref for ref in _REFERENCE.findall(text) if not ref.startswith(("data:", "#", "javascript:"))]


def test_pages_name_no_other_host(ui_api: Appliance) -> None:
    here = urlsplit(ui_api.url).netloc
    fetched: set[str] = set()
    queue = list(PAGES)
    with ui_api.client() as client:
        while queue:
            path = queue.pop(0)
            if path in fetched:
                continue
            fetched.add(path)
            response = client.get(path)
            assert response.status_code < 500, (path, response.status_code)
            if path not in PAGES:  # something a page loads: it must be served here
                assert response.status_code == 200, f"{path} is named by a page but answers {response.status_code}"
            if not response.headers.get("content-type", "").startswith(("text/html", "text/css")):
                continue
            for ref in _references(response.text):
                parts = urlsplit(urljoin(ui_api.url + path, ref))
                assert parts.netloc == here, f"{path} loads {ref} from another host"
                queue.append(parts.path)
    assert {"/schema/viewer/swagger-ui-bundle.js", "/schema/viewer/swagger-ui.css"} <= fetched, fetched


def test_viewer_serves_only_its_own_files(ui_api: Appliance) -> None:
    # The bundle's demo page and initializer point at the public petstore: not served.
    for name in ("index.html", "swagger-initializer.js", "..%2F..%2F__init__.py", "swagger-ui-bundle.js.map"):
        assert ui_api.get(f"/schema/viewer/{name}").status_code == 404, name
