"""``mistudio bench explain``: its fake judge answers in the form the job reads, its verdicts, and a tiny run
through a real appliance (an endpoint at two latencies and a local labeller)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


def _excerpt(tokens: list[str], marked: list[int], truth: bool = True):
    from appliance.pipeline.features.evidence import Excerpt

    return Excerpt(tokens=tokens, marked=marked, truth=truth)


def test_the_fake_judge_answers_in_the_form_the_job_reads() -> None:
    """The explainer's and the judges' real prompts (appliance.pipeline.features.judge) get replies the job's own
    readers take: an explanation, and one answer per context, in order."""
    from appliance.commands.bench.explain import reply_to
    from appliance.pipeline.features.judge import (
        explain_messages,
        judge_messages,
        parse_answers,
        parse_explanation,
    )

    excerpts = [_excerpt(["def", " main", "(", ")"], [1]), _excerpt(["class", " A", ":"], [0])]
    assert parse_explanation(reply_to(explain_messages(excerpts))) == "words about code and files"
    batch = [_excerpt(["a", " b", " c"], [1]), _excerpt(["x", " y"], [], truth=False), _excerpt(["p", " q"], [0])]
    assert parse_answers(reply_to(judge_messages("detection", "letters", batch)), 3) == [False] * 3  # no marks
    fuzzing = parse_answers(reply_to(judge_messages("fuzzing", "letters", batch)), 3)
    assert fuzzing == [True, False, True]  # marked where the excerpt marks a token


def _job(calls: int, seconds: float, **fields) -> dict:
    result = {"requested": 10, "explained": 10, "scored": 8, "failed": {"malformed": 2}, "calls": calls}
    return {
        "started_at": "2026-01-01T00:00:00Z",
        "finished_at": f"2026-01-01T00:00:{seconds:04.1f}Z",
        "result": result,
        **fields,
    }


def test_the_verdicts() -> None:
    from appliance.commands.bench.explain import Run, run_figures

    # 80 calls at 200 ms over 4 slots: an ideal of 4 s; 5 s is 1.25x (PASS), 8 s is 2x (MISS).
    fast = run_figures(Run("endpoint 200 ms", 0.2, _job(80, 5.0), judge_calls=80, most_in_flight=4))
    assert [f.verdict for f in fast] == ["", "", "PASS"]
    assert fast[0].value == pytest.approx(60 * 10 / 5.0) and fast[1].value == pytest.approx(60 * 8 / 5.0)
    assert fast[2].value == pytest.approx(1.25)
    assert run_figures(Run("endpoint 200 ms", 0.2, _job(80, 8.0), judge_calls=80))[2].verdict == "MISS"
    lost = run_figures(Run("endpoint 200 ms", 0.2, _job(80, 5.0), judge_calls=79))[2]
    assert lost.verdict == "MISS" and lost.errors == 1  # a call the judge never saw, or counted twice
    at_zero = run_figures(Run("endpoint 0 ms", 0.0, _job(80, 2.0), judge_calls=80))[2]
    assert at_zero.value == pytest.approx(1000 * 2.0 / 80 * 4) and at_zero.verdict == ""

    def local(planned: float | None, peak: float | None) -> str:
        fields = {} if planned is None else {"memory_planned_mb": planned, "memory_peak_mb": peak}
        return run_figures(Run("local 2x64", None, _job(40, 9.0, **fields)))[2].verdict

    assert local(1100, 1000) == "PASS" and local(900, 1000) == "MISS" and local(1500, 1000) == "MISS"
    assert local(None, None) == "MISS"  # an appliance that does not report its plan is not judged a pass


def test_a_tiny_run_through_a_real_appliance(tmp_path: Path) -> None:
    """Two features at two latencies and with a 1 x 32 local labeller: every run's calls reached the judge (or
    the worker's model) and were counted once, and the local job reported its memory plan and peak."""
    from appliance.commands.bench import run_bench
    from appliance.commands.cli import build_parser

    argv = ["bench", "explain", "--features", "2", "--latencies", "0,20", "--samples", "100", "--labeller", "1x32"]
    code = run_bench("explain", build_parser().parse_args([*argv, "--record-dir", str(tmp_path)]))
    record = json.loads((tmp_path / "explain.json").read_text())
    figures = {f["name"]: f for f in record["figures"]}
    assert code in (0, 1), code  # 2 would be a bench that could not run; a missed target depends on the machine
    assert record["settings"]["labeller"] == "1x32" and record["settings"]["latencies_ms"] == [0.0, 20.0]
    assert figures["endpoint 0 ms: appliance time per call"]["errors"] == 0
    assert figures["endpoint 20 ms: job time / ideal"]["errors"] == 0
    assert figures["endpoint 20 ms: explanations / min"]["value"] > 0
    memory = figures["local 1x32: memory plan / peak"]
    assert memory["errors"] == 0 and memory["value"] >= 1.0, memory  # the plan covers the peak
