"""/schema/openapi.json says what the API answers: schemathesis generates requests from the document
(valid and invalid ones) for every operation and checks each answer's status code, content type
and body against what the document declares for it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import Appliance

# The event streams never end, so a generated request to them would only time out.
SSE_PATHS = r"^/api/(events|jobs/\{job_id\}/events)$"
CHECKS = "status_code_conformance,content_type_conformance,response_schema_conformance"


def _schemathesis(app: Appliance) -> list[str]:
    st = Path(sys.executable).with_name("st")
    if not st.exists():
        pytest.skip("schemathesis is not installed (pip install -e '.[dev]')")
    return [
        str(st),
        "run",
        f"{app.url}/schema/openapi.json",
        "--checks",
        CHECKS,
        "--exclude-path-regex",
        SSE_PATHS,
        # Small and repeatable: few cases per operation, the same ones each run, one at a time (the
        # runs share two cores); deterministic mode keeps no example database between runs.
        "--max-examples",
        "5",
        "--seed",
        "14",
        "--generation-deterministic",
        "--workers",
        "1",
        "--request-timeout",
        "20",
        "--no-color",
    ]


@pytest.mark.timeout(420)
def test_openapi_document_matches_the_api(make_appliance, tmp_path: Path) -> None:
    # The API alone, on a fresh data dir: generated requests create jobs, and without a worker none
    # of them runs (a generated selftest may ask to hold gigabytes of memory), so every answer
    # depends on the request alone and the run repeats exactly.
    app = make_appliance()
    app.start_api()
    result = subprocess.run(_schemathesis(app), capture_output=True, text=True, timeout=360, cwd=tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-12_000:]
    assert "Tested: " in output and " passed" in output, output[-3000:]
