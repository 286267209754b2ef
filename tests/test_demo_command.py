"""`mistudio demo`: the whole pipeline on the demo kit through a running appliance's HTTP API (a
shortened run), its summary with real numbers, the record of a completed run, Ctrl-C leaving the job
running, and the message when no appliance answers."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

from appliance.commands import demo
from appliance.commands.bench import records
from tests.support import REPO, Appliance, bare_env, free_port

STAGES = ("demo kit", "tokenize", "activations", "training", "features", "steering")
DURATION = r"(?:\d+m )?[\d.]+s"  # 12.3s or 1m 02.3s
PROGRESS = re.compile(r"^\[\d/6\] .{11} +\d+%  ")  # a stage's progress line (not a terminal: no redraws)
COMMITTED = REPO / "docs" / "bench" / "demo.json"  # the full run the README shows: the tests leave it alone


def _mistudio() -> list[str]:
    entry = Path(sys.executable).parent / "mistudio"
    return [str(entry)] if entry.exists() else [sys.executable, "-m", "appliance"]


def _ignoring_sigint() -> None:
    """In the child before exec: start it as `cmd &` in a non-interactive shell starts it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


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
    # The top features, each with its score's interval, ranked by its lower bound, each with the
    # support to be scored, and none of them a latent of the special token every sample starts with.
    features = re.findall(r"^  #(\d+)\s+score ([\d.]+) \(([\d.]+)–([\d.]+)\)\s+freq\s+[\d.]+%\s+“(.+)”$", summary, re.M)
    assert 1 <= len(features) <= 5 and all(label.strip() for *_, label in features), summary
    browse = f"/api/training/{sae_id.group(1)}/features"
    rows = {r["index"]: r for r in app.get(browse, params={"limit": 500, "sort_by": "interpretability"}).json()["data"]}
    listed = [rows[int(index)] for index, *_ in features]
    assert [tuple(shown) for _, *shown, _ in features] == [
        tuple(f"{row[key]:.2f}" for key in ("score", "score_low", "score_high")) for row in listed
    ]
    assert all(row["score_state"] == "scored" for row in listed)
    assert [row["score_low"] for row in listed] == sorted((row["score_low"] for row in listed), reverse=True)
    for row in listed:
        top_token = app.get(f"{browse}/{row['index']}").json()["data"]["top_tokens"][0][0]
        assert not (top_token.startswith("<|") and top_token.endswith("|>")), (row, top_token)
    assert re.search(r"^  score     held-out F1 .*; interval: 95% ", summary, re.M), summary
    assert re.search(
        r"^  support   scored only with >= \d+ active samples and >= \d+ held-out positives; ", summary, re.M
    )

    unsteered = re.search(r"^  unsteered  “(.*)”$", summary, re.M)
    steered = re.search(r"^  steered    “(.*)”$", summary, re.M)
    assert unsteered and steered and unsteered.group(1) and steered.group(1), summary
    # The steered feature: among the best lower bounds of the scored features that fire on at
    # least the floor's share of tokens, the one that moved the text most, and visibly so.
    chosen = int(_number(r"(?m)^Steering\s+feature #(\d+) ", summary))
    row = rows[chosen]
    why = re.search(r"^  chosen     fires on ([\d.]+)% of tokens \(floor 1%\), score (.+)$", summary, re.M)
    assert why, summary
    assert why.groups() == (
        f"{row['frequency'] * 100:.2f}",
        f"{row['score']:.2f} ({row['score_low']:.2f}–{row['score_high']:.2f})",
    )
    assert row["frequency"] >= demo.FREQUENCY_FLOOR and row["score_state"] == "scored", row
    best = app.get(
        browse, params={"sort_by": "interpretability", "min_frequency": demo.FREQUENCY_FLOOR, "limit": demo.CANDIDATES}
    ).json()["data"]
    steerings = app.get("/api/jobs", params={"kind": "steering.generate"}).json()["data"]
    kls = {job["result"]["features"][0]["index"]: job["result"]["metrics"]["kl_divergence"] for job in steerings}
    assert set(kls) == {r["index"] for r in best} and len(steerings) == demo.CANDIDATES, (kls, best)
    kl = kls[chosen]
    assert kl == max(kls.values()) and kl >= 0.3, kls
    assert _number(r"(?m)^  KL (\d[\d.]*)   perplexity", summary) == round(kl, 3), (kl, summary)
    assert re.search(rf"^  why        of the 3 scored features .* KL {kl:.3f} ", summary, re.M), summary
    assert re.search(r"perplexity [\d.]+ -> [\d.]+ \(delta [+-][\d.]+\)", summary), summary
    assert 0 <= _number(r"similarity (-?[\d.]+)", summary) <= 1.0001
    assert re.search(rf"^Total\s+{DURATION}$", summary, re.M), summary

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

    # Ctrl-C during a stage: the command stops, says the job goes on, and the job does go on. It starts
    # with SIGINT ignored, as a background command of a shell does (and as it would inherit from a
    # pytest started so): the command's own handler stops it all the same.
    proc = subprocess.Popen(
        [*_mistudio(), "demo", "--no-record", "--url", app.url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=app.env,
        preexec_fn=_ignoring_sigint,
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


def test_demo_stops_on_sigint_even_when_started_ignoring_it_and_on_sigterm(make_appliance) -> None:
    """An API with no worker: the demo waits in its first stage (the demo kit's jobs stay queued) until
    a signal stops it: SIGINT though it started with SIGINT ignored (exit 130), and SIGTERM (143)."""
    app: Appliance = make_appliance()
    app.start_api()
    for signum, code in ((signal.SIGINT, 130), (signal.SIGTERM, 143)):
        proc = subprocess.Popen(
            [*_mistudio(), "demo", "--no-record", "--url", app.url],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=app.env,
            preexec_fn=_ignoring_sigint,
        )
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                if line.startswith("[1/6] demo kit"):
                    break
            proc.send_signal(signum)
            _, err = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert proc.returncode == code, (signum, proc.returncode, err)
        assert "mistudio demo: interrupted" in err and "Traceback" not in err, err
