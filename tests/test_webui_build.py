"""The committed UI build (webui/dist) is what the source builds to, and within its size budget."""

from __future__ import annotations

import gzip
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support import REPO

WEBUI = REPO / "webui"
DIST = WEBUI / "dist"
BUDGET_GZIP_BYTES = 250_000


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_initial_js_and_css_fit_the_budget() -> None:
    index = (DIST / "index.html").read_text()
    assets = re.findall(r'(?:src|href)="/(assets/[^"]+\.(?:js|css))"', index)
    assert any(a.endswith(".js") for a in assets) and any(a.endswith(".css") for a in assets), index
    for asset in assets:
        assert re.search(r"-[A-Za-z0-9_-]{8}\.(js|css)$", asset), f"{asset} has no content hash"
    total = sum(len(gzip.compress((DIST / a).read_bytes(), 9)) for a in assets)
    assert total < BUDGET_GZIP_BYTES, f"initial JS+CSS is {total} bytes gzipped"
    assert not list(DIST.rglob("*.map")), "source maps must not ship"


def test_committed_build_matches_a_rebuild_from_source(tmp_path: Path) -> None:
    npm = shutil.which("npm")
    if npm is None:
        if os.environ.get("CI"):
            pytest.fail("npm is needed to check webui/dist against its source")
        pytest.skip("npm not installed")
    work = tmp_path / "webui"
    shutil.copytree(WEBUI, work, ignore=shutil.ignore_patterns("node_modules", "dist"))
    env = {**os.environ, "CI": "true", "npm_config_fund": "false", "npm_config_audit": "false"}
    for cmd in (["npm", "ci", "--no-audit", "--no-fund"], ["npm", "run", "build"]):
        result = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, f"{' '.join(cmd)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    rebuilt, committed = _files(work / "dist"), _files(DIST)
    assert sorted(rebuilt) == sorted(committed), "file lists differ: rebuild webui/dist and commit it"
    changed = [name for name in committed if committed[name] != rebuilt[name]]
    assert not changed, f"webui/dist differs from its source in {changed}: run `npm ci && npm run build` in webui/"
