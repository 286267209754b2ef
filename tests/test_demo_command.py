"""`mistudio demo`: the whole pipeline on the demo kit through a running appliance's HTTP API (a
shortened run), its summary with real numbers, the record of a completed run, Ctrl-C leaving the job
running, and the message when no appliance answers."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

from appliance.commands.bench import records
from tests.support import REPO, Appliance, bare_env, free_port

STAGES = ("demo kit", "tokenize", "activations", "training", "features", "steering")
DURATION = r"(?:\d+m )?[\d.]+s"  # 12.3s or 1m 02.3s
PROGRESS = re.compile(r"^\[\d/6\] .{11} +\d+%  ")  # a stage's progress line (not a terminal: no redraws)
COMMITTED = REPO / "docs" / "bench" / "demo.json"  # the full run the README shows: the tests leave it alone


def _mistudio() -> list[str]:
    entry = Path(sys.executable).parent / "mistudio"
    return [str(entry)] if entry.exists() else [sys.executable, "-m", "appliance"]


def _number(pattern: str, text: str) -> float:
    found = re.search(pattern, text)
    assert found, f"no match for {pattern!r} in:\n{text}"
    return float(found.group(1))


def test_demo_quick_runs_every_stage_and_summarises(make_appliance, tmp_path: Path) -> None:
    committed = COMMITTED.read_bytes() if COMMITTED.exists() else None
    app: Appliance = make_appliance(
        {"MISTUDIO_SEED_DEMO": "1", "HF_HUB_OFFLINE": "1", "MISTUDIO_TOKEN": "demo-token-123"}
    )
    app.start_api()
    app.start_worker()

    # The token comes from MISTUDIO_TOKEN, like every other command; a wrong one is named as the problem.
    wrong = subprocess.run(
        [*_mistudio(), "demo", "--quick", "--no-record", "--url", app.url],
        capture_output=True,
        text=True,
        timeout=60,
        env={**app.env, "MISTUDIO_TOKEN": "not-the-token"},
    )
    assert wrong.returncode == 1 and "access token" in wrong.stderr, wrong.stderr

    run = subprocess.run(
        [*_mistudio(), "demo", "--quick", "--url", app.url, "--record-dir", str(tmp_path / "rec")],
        capture_output=True,
        text=True,
        timeout=240,
        env=app.env,
    )
    out = run.stdout
    assert run.returncode == 0, f"{out}\n{run.stderr}\n--- worker ---\n{app.log('worker')}"
    for number, stage in enumerate(STAGES, 1):
        assert re.search(rf"^\[{number}/6\] {stage}\s+done in {DURATION}", out, re.M), f"stage {stage} missing:\n{out}"
    assert "\r" not in out  # not a terminal: plain lines, no redraws
    summary = out.split("Summary\n=======\n", 1)[1]
    # The figures are the ones the appliance recorded for this run, as formatted (each is checked
    # against an independent computation in its own stage's tests).
    sae_id = re.search(r"^SAE\s+(tr_\w+):", summary, re.M)
    assert sae_id, summary
    evaluation = app.get(f"/api/training/{sae_id.group(1)}").json()["data"]["evaluation"]
    assert _number(r"explained variance\s+(-?[\d.]+)", summary) == round(evaluation["explained_variance"], 3)
    assert 0.2 < evaluation["explained_variance"] <= 1.0  # the quick run's SAE learned something
    assert _number(r"L0\s+([\d.]+) active latents", summary) == round(evaluation["l0"], 1)
    features = re.findall(r"^  #(\d+)\s+score ([\d.]+)\s+freq\s+[\d.]+%\s+“(.+)”$", summary, re.M)
    assert 1 <= len(features) <= 5 and all(label.strip() for _, _, label in features), summary
    rows = {
        r["index"]: r
        for r in app.get(
            f"/api/training/{sae_id.group(1)}/features", params={"limit": 500, "sort_by": "interpretability"}
        ).json()["data"]
    }
    assert [score for _, score, _ in features] == [f"{rows[int(index)]['score']:.2f}" for index, _, _ in features]
    unsteered = re.search(r"^  unsteered  “(.*)”$", summary, re.M)
    steered = re.search(r"^  steered    “(.*)”$", summary, re.M)
    assert unsteered and steered and unsteered.group(1) and steered.group(1), summary
    (steering,) = app.get("/api/jobs", params={"kind": "steering.generate"}).json()["data"]
    kl = steering["result"]["metrics"]["kl_divergence"]
    assert kl > 0 and _number(r"KL (\d[\d.]*)", summary) == round(kl, 3), (kl, summary)
    assert re.search(r"perplexity [\d.]+ -> [\d.]+ \(delta [+-][\d.]+\)", summary), summary
    assert 0 <= _number(r"similarity (-?[\d.]+)", summary) <= 1.0001
    assert re.search(rf"^Total\s+{DURATION}$", summary, re.M), summary
    # The steered feature is the first one listed.
    assert re.search(rf"^Steering\s+feature #{features[0][0]} ", summary, re.M), summary

    # The completed run is recorded where --record-dir says: exactly what it printed less the
    # progress lines, with the date, the machine and the duration; the README renders it as is.
    record = records.load_record(tmp_path / "rec" / "demo.json")
    printed = [line for line in out.splitlines() if not PROGRESS.match(line)]
    assert len(printed) < len(out.splitlines())  # there were progress lines to leave out
    assert record["transcript"] == printed
    assert (record["suite"], record["command"], record["settings"]["total_steps"]) == (
        "demo",
        "mistudio demo --quick",
        150,
    )
    assert record["recorded_at"] and record["machine"]["cores"] and record["appliance"]["same_machine"]
    total = re.search(r"^Total\s+((\d+)m )?([\d.]+)s$", summary, re.M)
    assert total and abs(record["duration_s"] - (60 * int(total.group(2) or 0) + float(total.group(3)))) < 0.11
    assert "$ .venv/bin/mistudio demo --quick\n" + "\n".join(printed) + "\n```" in records.render_block(record)
    assert f"recorded in {tmp_path / 'rec' / 'demo.json'}" in run.stderr

    # Ctrl-C during a stage: the command stops, says the job goes on, and the job does go on.
    proc = subprocess.Popen(
        [*_mistudio(), "demo", "--no-record", "--url", app.url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=app.env,
    )
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("[3/6] activations") and "%" in line:
                break
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    job_id = re.search(r"job (job_\w+) keeps running", err)
    assert job_id, err
    job = app.job(job_id.group(1))
    assert job["kind"] == "activations.extract" and job["status"] in ("queued", "running", "completed"), job
    app.post(f"/api/jobs/{job['id']}/cancel")
    # None of these runs touched the recorded full run the README quotes.
    assert (COMMITTED.read_bytes() if COMMITTED.exists() else None) == committed


def test_demo_without_an_appliance_says_how_to_start_one(tmp_path: Path) -> None:
    run = subprocess.run(
        [*_mistudio(), "demo", "--url", f"http://127.0.0.1:{free_port()}"],
        capture_output=True,
        text=True,
        timeout=30,
        env=bare_env(MISTUDIO_DATA_DIR=str(tmp_path)),
    )
    assert run.returncode == 1
    assert "no appliance answers" in run.stderr and "mistudio up" in run.stderr, run.stderr
