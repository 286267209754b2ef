"""Whatever a client sends, the API answers with a status below 500 and, on error, the envelope."""

from __future__ import annotations

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support import Appliance

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12,
)
selftest_bodies = (
    st.fixed_dictionaries(
        {},
        optional={
            "steps": json_values,
            "delay_ms": json_values,
            "fail_at": json_values,
            "lane": json_values,
        },
    )
    | json_values
)
path_text = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=40)

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _check(response: httpx.Response) -> None:
    assert response.status_code < 500, (response.request.url, response.status_code, response.text)
    if response.status_code >= 400:
        assert set(response.json()["error"]) == {"code", "message", "details", "retryable", "timestamp"}


@FUZZ
@given(body=selftest_bodies)
def test_random_json_bodies(shared_appliance: Appliance, body) -> None:
    # Small, bounded jobs only: a valid random body would otherwise queue work for minutes.
    if isinstance(body, dict) and isinstance(body.get("steps"), int):
        body["steps"] = 1
    if isinstance(body, dict) and isinstance(body.get("delay_ms"), int):
        body["delay_ms"] = 0
    _check(shared_appliance.post("/api/jobs/selftest", json=body))


@FUZZ
@given(raw=st.binary(max_size=200))
def test_random_bytes_as_body(shared_appliance: Appliance, raw: bytes) -> None:
    _check(shared_appliance.post("/api/jobs/selftest", content=raw, headers={"content-type": "application/json"}))


@FUZZ
@given(segment=path_text, action=st.sampled_from(["", "/cancel", "/events?format=json"]))
def test_random_job_ids(shared_appliance: Appliance, segment: str, action: str) -> None:
    # Percent-encode what httpx would otherwise reinterpret (/, ?, #, ..); keep the rest raw.
    path = (
        "/api/jobs/"
        + "".join(c if c.isalnum() or c in "_-" else f"%{ord(c):02X}" if ord(c) < 128 else c for c in segment)
        + action
    )
    method = "POST" if action == "/cancel" else "GET"
    with shared_appliance.client() as client:
        _check(client.request(method, path))


@FUZZ
@given(params=st.dictionaries(st.sampled_from(["page", "limit", "status", "kind", "topics"]), path_text, max_size=3))
def test_random_list_queries(shared_appliance: Appliance, params: dict) -> None:
    _check(shared_appliance.get("/api/jobs", params=params))
