"""Explanations by a language model, scored by detection and fuzzing, end to end: a real API and worker, a
demo-model SAE of 512 latents, and a fake OpenAI-compatible endpoint on loopback (tests/fakejudge.py) that
explains and judges by a rule of its own. With each feature's true explanation the judges' balanced accuracy
is high; with another feature's it is chance. Malformed answers, timeouts and refused keys are per-feature
states; an endpoint that is down fails the job; a cap stops the run; a run of 200 features cancelled half-way
resumes without explaining any feature twice or losing one; the key never leaves the worker."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from typing import Any

import pytest

from appliance.data.redact import PREFIX_LEN
from tests.fakejudge import FakeJudge, explanation_of
from tests.support import Appliance, SSEReader, demo_sae, free_port, job_finished, started_demo, wait_until
from tests.test_api_contract import assert_error

KEY = "sk-test-Zq81vW0rT5yLm3Kp9XcB2nHd"
LEAKED = (KEY, KEY[: PREFIX_LEN + 4])  # the key, or enough of it to matter
LAYER = 0


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Appliance]:
    yield from started_demo(tmp_path_factory, "explanations", HF_HUB_OFFLINE="1")


@pytest.fixture(scope="module")
def tid(app: Appliance) -> str:
    """A TopK SAE of 512 latents on the demo model's first block (its features are the most token-like), its
    features extracted (special tokens left out)."""
    trained, _ = demo_sae(
        app,
        LAYER,
        "topk",
        max_samples=400,
        seed=1,
        extraction={"eval_samples": 200, "top_k_examples": 10},
        k=8,
        total_steps=200,
        log_every=50,
    )
    return str(trained["target"]["id"])


@pytest.fixture
def fake() -> Iterator[FakeJudge]:
    judge = FakeJudge()
    yield judge
    judge.shutdown()


def _settings(app: Appliance, url: str, **fields: Any) -> None:
    body = {
        "provider": "openai",
        "endpoint": url,
        "model": "judge-1",
        "api_key": KEY,
        "examples": 5,
        "examples_per_class": 10,
        "timeout_s": 10.0,
        "concurrency": 4,
        **fields,
    }
    response = app.client().put("/api/settings/labeling", json=body)
    assert response.status_code == 200 and KEY not in response.text, response.text


def _explain(app: Appliance, tid: str, **body: Any) -> dict[str, Any]:
    return app.finished(app.post(f"/api/training/{tid}/features/explain", json=body), timeout=300)


def _explanations(app: Appliance, tid: str, index: int) -> list[dict[str, Any]]:
    response = app.get(f"/api/training/{tid}/features/{index}/explanations")
    assert response.status_code == 200, response.text
    return response.json()["data"]


def _token_features(app: Appliance, tid: str, count: int, floor: float = 0.7) -> dict[int, str]:
    """``count`` features scored at least ``floor`` (the lower bound) that fire on one token each (their top
    tokens are one token, a distinct one each), best first: index -> that token, as the prompts write it."""
    rows = app.get(f"/api/training/{tid}/features", params={"sort_by": "interpretability", "limit": 500}).json()["data"]
    chosen: dict[int, str] = {}
    for row in rows:
        if row["score_state"] != "scored" or row["score_low"] < floor:
            continue
        top = app.get(f"/api/training/{tid}/features/{row['index']}").json()["data"]["top_tokens"]
        token = top[0][0].replace("\r", "\\r").replace("\n", "\\n")  # as the prompts write it
        single = top[0][1] >= 0.9 * sum(n for _, n in top)
        if single and token.strip() and token not in chosen.values():
            chosen[row["index"]] = token
        if len(chosen) == count:
            break
    assert len(chosen) == count, f"only {len(chosen)} one-token features among the best scored"
    return chosen


def _db(app: Appliance, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(app.data_dir / "mistudio.db")
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


def test_true_explanations_score_high_and_another_features_score_chance(
    app: Appliance, tid: str, fake: FakeJudge
) -> None:
    _settings(app, fake.url)
    features = _token_features(app, tid, 3)
    job = _explain(app, tid, features=list(features))
    assert job["status"] == "completed", job["error"]
    result = job["result"]
    assert result["explained"] == result["scored"] == 3 and result["failed"] == {} and result["stopped"] is None
    assert set(fake.keys) == {f"Bearer {KEY}"}

    rows = {r["index"]: r for r in app.get(f"/api/training/{tid}/features", params={"limit": 500}).json()["data"]}
    calls = 0
    for index, token in features.items():
        [found] = _explanations(app, tid, index)
        calls += found["calls"]
        # 10 activating and 10 silent contexts per judge (fewer, as many of each, for fewer held-out positives),
        # 5 to a call, after one explanation.
        per_class = min(10, -(-rows[index]["held_out_positives"] // 2))
        assert found["calls"] == 1 + 2 * -(-2 * per_class // 5), (found["calls"], per_class)
        assert found["state"] == "scored" and found["explanation"] == explanation_of(token), found
        assert found["provider"] == "openai" and found["model"].startswith("judge-1@127.0.0.1:")
        for method in ("detection", "fuzzing"):
            score = found[method]
            assert score["balanced_accuracy"] >= 0.9, (index, token, method, score)
            assert score["low"] <= score["balanced_accuracy"] <= score["high"] <= 1
            assert score["total"] == 2 * per_class and sum(e["truth"] for e in score["examples"]) == per_class
        # The judges saw held-out samples (every fifth), the explainer never one; fuzzing's contexts are marked.
        assert found["explainer_examples"] and all(e["sample"] % 5 != 4 for e in found["explainer_examples"])
        assert all(e["sample"] % 5 == 4 for m in ("detection", "fuzzing") for e in found[m]["examples"])
        assert all(e["highlighted"] for e in found["fuzzing"]["examples"])
        assert "balanced accuracy" in found["method"]
    assert result["calls"] == calls

    rows = {r["index"]: r for r in app.get(f"/api/training/{tid}/features", params={"limit": 500}).json()["data"]}
    for index, token in features.items():
        assert rows[index]["llm_label"] == explanation_of(token) == rows[index]["label"]
        assert rows[index]["detection"] >= 0.9 and rows[index]["fuzzing_low"] is not None
    best = app.get(f"/api/training/{tid}/features", params={"sort_by": "detection", "limit": 3}).json()["data"]
    assert {r["index"] for r in best} == set(features)

    # The explainer names another feature's token instead (one that is not mostly newlines and spaces, which
    # any context has): the judges are right only by chance.
    tokens = list(features.values())
    rare = [t for t in tokens if t.replace("\\n", "").strip()]
    fake.swap = {t: next(r for r in rare if r != t) for t in tokens}
    job = _explain(app, tid, features=list(features), redo=True)
    assert job["status"] == "completed" and job["result"]["scored"] == 3, job
    for index in features:
        latest = _explanations(app, tid, index)[0]
        for method in ("detection", "fuzzing"):
            assert abs(latest[method]["balanced_accuracy"] - 0.5) <= 0.1, (index, method, latest[method])
        assert rows[index]["detection"] != (row := _row(app, tid, index))["detection"] and row["detection"] < 0.7


def _row(app: Appliance, tid: str, index: int) -> dict[str, Any]:
    rows = app.get(f"/api/training/{tid}/features", params={"search": f"#{index}"}).json()["data"]
    return next(r for r in rows if r["index"] == index)


def test_malformed_answers_timeouts_and_refused_keys_are_states_of_their_features(
    app: Appliance, tid: str, fake: FakeJudge
) -> None:
    _settings(app, fake.url, timeout_s=1.0, concurrency=1, examples_per_class=5)
    features = _token_features(app, tid, 4, floor=0.2)
    good, garbled, slow, refused = features
    fake.faults = {features[garbled]: "malformed", features[slow]: "sleep", features[refused]: "401"}
    fake.sleep_s = 2.0
    job = _explain(app, tid, features=[good, garbled, slow, refused])
    assert job["status"] == "completed", job["error"]
    assert job["result"]["failed"] == {"malformed": 1, "timeout": 1, "unauthorized": 1}, job["result"]
    states = {i: _explanations(app, tid, i)[0] for i in features}
    assert states[good]["state"] == "scored"
    assert states[garbled]["state"] == "malformed" and "could not be read" in states[garbled]["message"]
    assert states[garbled]["explanation"] == explanation_of(features[garbled])  # explained, not judged
    assert states[garbled]["detection"]["answered"] == 0
    assert states[slow]["state"] == "timeout" and "within 1 s" in states[slow]["message"]
    assert states[refused]["state"] == "unauthorized" and "401" in states[refused]["message"]
    assert "[redacted]" in states[refused]["message"]
    _assert_no_key(app, job["id"])

    # Again: the endpoint's failures are tried again, the answers kept.
    fake.faults = {}
    job = _explain(app, tid, features=[good, garbled, slow, refused])
    assert job["status"] == "completed", job["error"]
    assert (job["result"]["cached"], job["result"]["scored"], job["result"]["failed"]) == (2, 2, {})


def test_an_endpoint_that_is_down_fails_the_run_and_a_cap_stops_it(app: Appliance, tid: str, fake: FakeJudge) -> None:
    base = f"/api/training/{tid}/features"
    assert app.client().put("/api/settings/labeling", json={"provider": "none"}).status_code == 200
    assert_error(app.post(f"{base}/explain", json={"top": 3}), 409, "CONFLICT")
    assert_error(app.client().put("/api/settings/labeling", json={"provider": "openai"}), 400, "VALIDATION_ERROR")
    assert_error(
        app.client().put("/api/settings/labeling", json={"provider": "local", "local_model_id": "m_missing000"}),
        404,
        "NOT_FOUND",
    )

    _settings(app, f"http://127.0.0.1:{free_port()}/v1")  # nothing listens there
    dead = [
        r["index"]
        for r in app.get(base, params={"include_dead": True, "sort_by": "frequency", "order": "asc"}).json()["data"]
        if r["frequency"] == 0
    ]
    if dead:
        assert_error(app.post(f"{base}/explain", json={"features": dead[:3]}), 400, "VALIDATION_ERROR")
    job = _explain(app, tid, top=5)
    assert job["status"] == "failed" and job["error"]["code"] == "UPSTREAM_UNAVAILABLE", job
    assert "could not be reached" in job["error"]["message"]

    # A key the endpoint refuses, for every feature: the job fails with the upstream's words, without the key.
    _settings(app, fake.url, examples_per_class=2)
    fake.refuse = True
    job = _explain(app, tid, top=5)
    assert job["status"] == "failed" and job["error"]["code"] == "UPSTREAM_UNAVAILABLE", job
    assert "401" in job["error"]["message"] and "[redacted]" in job["error"]["message"], job["error"]
    _assert_no_key(app, job["id"])
    log = (app.logs / "worker.log").read_text(errors="replace")
    assert f"job {job['id']} failed" in log and "[redacted]" in log, log[-3000:]

    # 7 calls: two features of 3 (an explanation, a detection and a fuzzing call), then the cap.
    fake.refuse = False
    job = _explain(app, tid, top=5, max_calls=7)
    assert job["status"] == "completed", job["error"]
    result = job["result"]
    assert (result["explained"], result["calls"], result["stopped"], result["left"]) == (2, 6, "cap", 3), result


def _assert_no_key(app: Appliance, job_id: str) -> None:
    """The key is in none of the job, its events (stored, or replayed over SSE), the tables or the worker's log."""
    assert not any(k in app.get(f"/api/jobs/{job_id}").text for k in LEAKED)
    headers = {**app.auth_headers(), "Last-Event-ID": "0"}
    with SSEReader(f"{app.url}/api/events?topics=job:{job_id}", headers=headers) as reader:
        reader.wait_for(job_finished(job_id))
    replayed = json.dumps([event["payload"] for event in reader.events])
    assert not any(k in replayed for k in LEAKED), replayed
    for table in ("events", "jobs", "feature_explanations"):
        stored = "\n".join(str(row) for row in _db(app, f"SELECT * FROM {table}"))
        assert not any(k in stored for k in LEAKED), table
    log = (app.logs / "worker.log").read_text(errors="replace")
    assert not any(k in log for k in LEAKED), log[-3000:]


def test_a_run_of_200_cancelled_half_way_resumes_without_explaining_a_feature_twice(
    app: Appliance, tid: str, fake: FakeJudge
) -> None:
    _settings(app, fake.url, examples=3, examples_per_class=2, timeout_s=30.0)
    fake.hold_at = 100
    response = app.post(f"/api/training/{tid}/features/explain", json={"top": 200})
    assert response.status_code == 202, response.text
    job_id = response.json()["data"]["job_id"]
    wait_until(fake.holding.is_set, timeout=120, what="the 100th explanation")
    assert app.post(f"/api/jobs/{job_id}/cancel").status_code == 200
    fake.release.set()
    assert app.wait_status(job_id, "cancelled", "completed", "failed", timeout=60)["status"] == "cancelled"
    explainer = f"openai:judge-1@127.0.0.1:{fake.server.server_port}"
    kept = _db(app, "SELECT count(*) FROM feature_explanations WHERE explainer = ?", explainer)[0][0]
    assert 100 <= kept < 200, kept  # those in flight at the cancel kept their explanations; the rest waits

    fake.hold_at = None
    job = _explain(app, tid, top=200)
    assert job["status"] == "completed", job["error"]
    assert job["result"]["requested"] == 200 and job["result"]["left"] == 0
    assert sorted(fake.explain_prompts.values()) == [1] * 200  # each feature explained once, over both runs
    rows = _db(app, "SELECT state FROM feature_explanations WHERE explainer = ?", explainer)
    assert len(rows) == 200 and {state for (state,) in rows} <= {"scored", "explained"}


def test_the_sae_own_model_explains_as_the_local_provider(app: Appliance, tid: str) -> None:
    """Without an endpoint: the SAE's own model (1.4 M parameters: weak explanations, but its own) answers on the
    worker, as "local:<its model id>"; the key is removed with an empty one."""
    response = app.client().put("/api/settings/labeling", json={"provider": "local", "api_key": "", "examples": 3})
    assert response.status_code == 200 and response.json()["data"]["has_api_key"] is False
    features = list(_token_features(app, tid, 2, floor=0.2))
    job = _explain(app, tid, features=features, score=False)
    assert job["status"] == "completed", job["error"]
    assert job["result"]["explainer"].startswith("local:m_") and job["result"]["requested"] == 2
    for index in features:
        found = _explanations(app, tid, index)[0]  # the latest
        assert found["provider"] == "local" and found["state"] in ("explained", "malformed"), found
        assert found["calls"] == 1 and found["detection"] is None


def test_the_judges_replies_are_read_leniently() -> None:
    """A bracketed list (of 1/0, true/false, yes/no), else bare digits, else "Example N:" lines; anything else,
    or a list of the wrong length, is no answer. The explanation is the "[EXPLANATION]:" line without quotes."""
    from appliance.pipeline.features.judge import balanced_accuracy, parse_answers, parse_explanation

    assert parse_answers("Sure.\n[1, 0, 1, 0, 0]", 5) == [True, False, True, False, False]
    assert parse_answers("[true, false, yes]", 3) == [True, False, True]
    assert parse_answers("[1, 0]\nso: [0, 1, 1]", 3) == [False, True, True]  # the list of the right length
    assert parse_answers("1 0 1", 3) == [True, False, True]
    assert parse_answers("Example 1: yes\nExample 2: no", 2) == [True, False]
    assert parse_answers("[1, 0, 1]", 5) is None and parse_answers("I would rather not say.", 2) is None
    assert parse_explanation('Thinking...\n[EXPLANATION]: "closing brackets".') == "closing brackets"
    assert parse_explanation('[EXPLANATION]: the token " the"') == 'the token " the"'  # a quote inside stays
    assert parse_explanation("**Numbers in code**.") == "Numbers in code" and parse_explanation("  ") is None
    # Balanced accuracy: the mean of the rates on each class, whatever their sizes; chance is 0.5.
    assert balanced_accuracy([True] * 8 + [False] * 2, [True] * 8 + [False] * 2, [0])[0] == 0.5
    assert balanced_accuracy([True, False], [True, True], [0]) == (1.0, 1.0, 1.0)
    assert balanced_accuracy([True, True], [True, True], [0]) is None  # no negative: no score
