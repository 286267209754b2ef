"""The benches' verdicts ignore nothing, share one exit convention, and the README's figures are the
recorded ones. Synthetic inputs for the verdict logic (nothing here is timed); a real API for the
parts that read a live process or a live answer."""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import types
from pathlib import Path

import httpx
import pytest

import appliance.commands.bench as bench
from appliance.commands.bench import harness, records
from appliance.commands.bench.api import Config, LoadResult, Pickup, Results, SseResult, _figures, _load
from appliance.commands.bench.datasets import latency_figure
from appliance.commands.bench.harness import BenchError, Figure, finish, tree_cpu_seconds
from appliance.commands.bench.harness import timed_get as _timed_get
from appliance.commands.bench.monitoring import Usage, monitoring_figures
from tests.support import REPO, SSEReader, wait_until
from tests.test_platform import make_jetson_root
from tests.test_system_monitoring import ORIN_LINE

# -- bench api: failed requests and lost or duplicated SSE events --------------------------------


def _api_results(load_errors: int = 0, steps: list[int] | None = None) -> Results:
    fast = [1.0] * 100  # far below every target: only the errors can make a row a MISS
    res = Results(
        rss_api_start=50.0, rss_api_idle=[55.0], rss_api_end=55.0, rss_worker_end=90.0, api_up_s=0.5, ready_s=1.0
    )
    res.load = [LoadResult("/api/health", 50, fast, 1.0, load_errors, "HTTP 500" if load_errors else "")]
    steps = list(range(1, 6)) if steps is None else steps
    res.sse = SseResult(5, [5.0] * len(steps), 1.0, steps=steps)
    res.busy = res.idle = [Pickup(10.0, "", "")]
    return res


def _verdicts(figures: list[Figure]) -> dict[str, str]:
    return {f.name: f.verdict for f in figures}


def test_api_rows_pass_without_errors() -> None:
    verdicts = _verdicts(_figures(Config(), _api_results()))
    assert verdicts["GET /api/health p95 (50 raw clients)"] == "PASS"
    assert verdicts["SSE delivery p95"] == "PASS"


def test_api_failed_request_makes_its_row_a_miss() -> None:
    figures = _figures(Config(), _api_results(load_errors=1))
    row = next(f for f in figures if f.name == "GET /api/health p95 (50 raw clients)")
    assert (row.verdict, row.errors) == ("MISS", 1)
    assert "1 error" in row.cells()[4]  # the count is printed in the row
    assert harness.exit_code(figures) == harness.EXIT_MISSED


@pytest.mark.parametrize("steps, lost, duplicated", [([1, 2, 4, 5], 1, 0), ([1, 2, 3, 3, 4, 5], 0, 1)])
def test_api_lost_or_duplicated_sse_event_is_a_miss(steps: list[int], lost: int, duplicated: int) -> None:
    res = _api_results(steps=steps)
    assert (res.sse.lost, res.sse.duplicated) == (lost, duplicated)
    row = next(f for f in _figures(Config(), res) if f.name == "SSE delivery p95")
    assert row.verdict == "MISS" and row.errors == lost + duplicated
    assert f"{lost} lost, {duplicated} duplicated" in row.note


def test_api_load_counts_failures_and_keeps_them_out_of_the_percentiles() -> None:
    answers = iter(["", "HTTP 500: boom"] * 10)

    async def get(conn: object, path: str) -> str:
        return next(answers)

    result = asyncio.run(_load([object(), object()], get, "/api/health", 20))
    assert (len(result.latencies_ms), result.errors, result.first_error) == (10, 10, "HTTP 500: boom")


# -- bench datasets: every page is checked ------------------------------------------------------


def test_datasets_non_200_page_is_a_miss(make_appliance) -> None:
    app = make_appliance()
    app.start_api()
    latencies: list[float] = []
    failures: list[str] = []
    with httpx.Client(base_url=app.url, headers=app.auth_headers()) as client:
        _timed_get(client, "/api/health", {}, latencies, failures)
        _timed_get(client, "/api/datasets/ds_notthere1/samples", {"page": 20, "limit": 10}, latencies, failures)
    assert len(latencies) == 1 and len(failures) == 1 and "HTTP 404" in failures[0]
    figure = latency_figure("browse page p95", latencies, failures, 50, "deep pages")
    assert figure.verdict == "MISS" and figure.errors == 1
    assert latency_figure("browse page p95", latencies, [], 50, "deep pages").verdict == "PASS"


# -- bench monitoring: the processes the API starts are counted ---------------------------------


def test_monitoring_cost_counts_the_started_processes() -> None:
    idle = Usage(api=0.3, children=0.0, wall=60.0)
    # The API alone costs 0.17% more while streaming; its tegrastats 1.5% of a core.
    streaming = Usage(api=0.4, children=0.9, wall=60.0)
    cost = next(f for f in monitoring_figures(idle, streaming, 2.0, 30, 0) if f.name == "cost of monitoring")
    assert cost.value == pytest.approx(100 * (1.3 - 0.3) / 60)
    assert cost.verdict == "MISS"
    cheap = Usage(api=0.4, children=0.05, wall=60.0)
    assert (
        next(f for f in monitoring_figures(idle, cheap, 2.0, 30, 0) if f.name == "cost of monitoring").verdict == "PASS"
    )
    # A streaming window with no sample measured nothing.
    assert (
        next(f for f in monitoring_figures(idle, cheap, 2.0, 0, 1) if f.name == "cost of monitoring").verdict == "MISS"
    )


def _burning_tegrastats(tmp_path: Path, burn_s: float) -> tuple[Path, Path]:
    burned = tmp_path / "burned"
    script = tmp_path / "tegrastats"
    script.write_text(f"""#!{sys.executable}
import time
start = time.process_time()
while time.process_time() - start < {burn_s}:
    pass
open({str(burned)!r}, "w").write("1")
while True:
    print({ORIN_LINE!r}, flush=True)
    time.sleep(0.2)
""")
    script.chmod(0o755)
    return script, burned


def test_tree_cpu_counts_the_tegrastats_the_api_starts(make_appliance, tmp_path: Path) -> None:
    burn_s = 0.4
    script, burned = _burning_tegrastats(tmp_path, burn_s)
    app = make_appliance(
        {
            "MISTUDIO_HOST_ROOT": str(make_jetson_root(tmp_path / "host")),
            "MISTUDIO_TEGRASTATS": str(script),
            "MISTUDIO_METRICS_INTERVAL_S": "0.5",
        }
    )
    app.start_api()
    pid = app.api.pid
    before = tree_cpu_seconds(pid)
    assert before.live_children == 0  # nobody watches: no tegrastats
    with SSEReader(app.url + "/api/events?topics=system") as reader:
        reader.wait_for(
            lambda events: burned.exists() and any(e["event"] == "system.metrics" for e in events), timeout=60
        )
        during = tree_cpu_seconds(pid) - before
    # /proc counts in clock ticks, sampled: allow a few ticks less than the script burned.
    assert during.live_children >= 1 and during.children >= burn_s - 0.05
    # Once the listener left the API stops and reaps tegrastats; its time moves to the API's
    # cutime/cstime and stays counted.
    wait_until(lambda: tree_cpu_seconds(pid).live_children == 0, timeout=30, what="tegrastats to stop")
    after = tree_cpu_seconds(pid) - before
    assert after.children >= during.children - 0.02


# -- one exit convention -------------------------------------------------------------------------


def _suite(run) -> types.ModuleType:
    module = types.ModuleType("fake_suite")
    module.run = run
    return module


def _cannot_start(args: argparse.Namespace) -> int:
    raise BenchError("the appliance did not start")


def _crashes(args: argparse.Namespace) -> int:
    raise KeyError("data")  # an unexpected crash must not read as "a target missed"


@pytest.mark.parametrize(
    "run, code",
    [
        (lambda args: finish("api", [Figure("p95", 1.0, "ms", target=20)]), 0),
        (lambda args: finish("api", [Figure("p95", 30.0, "ms", target=20)]), 1),
        (lambda args: finish("api", [Figure("p95", 1.0, "ms", target=20, errors=2)]), 1),
        (_cannot_start, 2),
        (_crashes, 2),
    ],
)
def test_exit_convention(monkeypatch, tmp_path: Path, run, code: int) -> None:
    monkeypatch.setattr(bench, "load_suite", lambda suite: _suite(run))
    monkeypatch.setattr(harness, "RECORD_DIR", None)
    args = argparse.Namespace(no_record=False, record_dir=str(tmp_path / "records"))
    assert bench.run_bench("api", args) == code
    if code in (0, 1):
        record = records.load_record(tmp_path / "records" / "api.json")
        assert record["exit_code"] == code and record["figures"][0]["name"] == "p95"


def test_bench_help_documents_the_exit_codes() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "appliance", "bench", "--help"], capture_output=True, text=True, cwd=REPO, timeout=60
    ).stdout
    assert "0    every target met" in out and "1    a target missed" in out
    assert "2    the benchmark itself could not run" in out


# -- the README quotes the recorded runs -----------------------------------------------------------


def test_recording_refreshes_the_readme_block(monkeypatch, tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- bench:api -->\nold numbers, written by hand\n<!-- /bench:api -->\nmore\n")
    monkeypatch.setattr(harness, "RECORD_DIR", tmp_path / "docs" / "bench")
    assert finish("api", [Figure("API RSS after idle", 61.3, "MB", target=80)], settings={"clients": 50}) == 0
    record = records.load_record(tmp_path / "docs/bench/api.json")
    assert record["machine"]["cores"] and record["recorded_at"] and record["settings"] == {"clients": 50}
    text = readme.read_text()
    assert "old numbers" not in text and text.startswith("intro\n") and text.endswith("more\n")
    assert records.readme_blocks(text)["api"] == records.render_block(record)
    assert "| API RSS after idle | 61.3 MB | < 80 MB | PASS |" in text


def test_readme_figures_match_the_last_recorded_runs() -> None:
    """Every marked block in the README is exactly what its suite's last recorded run renders to;
    suites that have not been recorded yet have no block."""
    blocks = records.readme_blocks((REPO / "README.md").read_text())
    assert blocks, "the README quotes no recorded run"
    directory = REPO / "docs" / "bench"
    for suite, body in blocks.items():
        path = records.record_path(directory, suite)
        assert path.exists(), f"the README quotes {suite} figures but {path} records no run"
        record = records.load_record(path)
        assert body == records.render_block(record), (
            f"the README's {suite} figures differ from {path}: run `{record['command']}` (it refreshes them)"
        )
    for path in sorted(directory.glob("*.json")):
        record = json.loads(path.read_text())
        assert record["suite"] == path.stem and record["recorded_at"] and record["machine"]["cores"]
        if "transcript" in record:  # mistudio demo: what it printed
            assert record["transcript"] and record["duration_s"] > 0
        else:
            assert all({"name", "value", "verdict", "text"} <= set(f) for f in record["figures"])


def test_readme_demo_transcript_is_the_recorded_run() -> None:
    """The README shows `mistudio demo`'s output only inside its marked block (checked against
    docs/bench/demo.json above), and that record is of a completed full run."""
    text = (REPO / "README.md").read_text()
    assert "demo" in records.readme_blocks(text), "the README's demo transcript is not rendered from a record"
    assert "$ .venv/bin/mistudio demo" not in records.BLOCK.sub("", text), "a demo transcript written by hand"
    record = records.load_record(REPO / "docs" / "bench" / "demo.json")
    assert record["command"] == "mistudio demo" and record["settings"]["total_steps"] == 4000
    assert record["transcript"][-2].startswith("Total ") and "Summary" in record["transcript"]


def test_saving_a_transcript_refreshes_its_readme_block(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- bench:demo -->\n```text\nwritten by hand\n```\n<!-- /bench:demo -->\nmore\n")
    record = {
        "suite": "demo",
        "command": "mistudio demo",
        "recorded_at": "2026-11-30T10:00:00Z",
        "machine": harness.machine_info(),
        "duration_s": 12.5,
        "transcript": ["first line", "Total  12.5s"],
        "appliance": {"platform_kind": "cpu", "cuda_available": False, "torch": "2.5.1", "same_machine": True},
    }
    path, refreshed = records.save(tmp_path / "docs" / "bench", record)
    assert path == tmp_path / "docs/bench/demo.json" and refreshed == readme
    assert records.load_record(path) == record
    text = readme.read_text()
    assert "written by hand" not in text and text.startswith("intro\n") and text.endswith("more\n")
    body = records.readme_blocks(text)["demo"]
    assert body == records.render_block(record)
    assert "```text\n$ .venv/bin/mistudio demo\nfirst line\nTotal  12.5s\n```\n" in body
    assert "the appliance on the same machine (CPU only, torch 2.5.1)" in body
