"""`mistudio demo`: the whole pipeline on the demo kit through a running appliance's HTTP API (a
shortened run), its summary with real numbers, Ctrl-C leaving the job running, and the message when
no appliance answers."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

from tests.support import Appliance, bare_env, free_port

STAGES = ("demo kit", "tokenize", "activations", "training", "features", "steering")
DURATION = r"(?:\d+m )?[\d.]+s"  # 12.3s or 1m 02.3s


def _mistudio() -> list[str]:
    entry = Path(sys.executable).parent / "mistudio"
    return [str(entry)] if entry.exists() else [sys.executable, "-m", "appliance"]


def _number(pattern: str, text: str) -> float:
    found = re.search(pattern, text)
    assert found, f"no match for {pattern!r} in:\n{text}"
    return float(found.group(1))


def test_demo_quick_runs_every_stage_and_summarises(make_appliance) -> None:
    app: Appliance = make_appliance({"MISTUDIO_SEED_DEMO": "1", "HF_HUB_OFFLINE": "1",
                                     "MISTUDIO_TOKEN": "demo-token-123"})
    app.start_api()
    app.start_worker()

    # The token comes from MISTUDIO_TOKEN, like every other command; a wrong one is named as the problem.
    wrong = subprocess.run([*_mistudio(), "demo", "--quick", "--url", app.url], capture_output=True, text=True,
                           timeout=60, env={**app.env, "MISTUDIO_TOKEN": "not-the-token"})
    assert wrong.returncode == 1 and "access token" in wrong.stderr, wrong.stderr

    run = subprocess.run([*_mistudio(), "demo", "--quick", "--url", app.url], capture_output=True, text=True,
                         timeout=240, env=app.env)
    out = run.stdout
    assert run.returncode == 0, f"{out}\n{run.stderr}\n--- worker ---\n{app.log('worker')}"
    for number, stage in enumerate(STAGES, 1):
        assert re.search(rf"^\[{number}/6\] {stage}\s+done in {DURATION}", out, re.M), f"stage {stage} missing:\n{out}"
    assert "\r" not in out  # not a terminal: plain lines, no redraws
    summary = out.split("Summary\n=======\n", 1)[1]
    assert 0.2 < _number(r"explained variance\s+(-?[\d.]+)", summary) <= 1.0
    assert 0 < _number(r"L0\s+([\d.]+) active latents", summary) <= 8  # k = 8 in the quick plan
    features = re.findall(r"^  #(\d+)\s+score ([\d.]+)\s+freq\s+[\d.]+%\s+“(.+)”$", summary, re.M)
    assert 1 <= len(features) <= 5 and all(label.strip() for _, _, label in features), summary
    assert all(0 <= float(score) <= 1 for _, score, _ in features)
    unsteered = re.search(r"^  unsteered  “(.*)”$", summary, re.M)
    steered = re.search(r"^  steered    “(.*)”$", summary, re.M)
    assert unsteered and steered and unsteered.group(1) and steered.group(1), summary
    assert _number(r"KL (\d[\d.]*)", summary) >= 0
    assert re.search(r"perplexity [\d.]+ -> [\d.]+ \(delta [+-][\d.]+\)", summary), summary
    assert 0 <= _number(r"similarity (-?[\d.]+)", summary) <= 1.0001
    assert re.search(rf"^Total\s+{DURATION}$", summary, re.M), summary
    # The steered feature is the first one listed.
    assert re.search(rf"^Steering\s+feature #{features[0][0]} ", summary, re.M), summary

    # Ctrl-C during a stage: the command stops, says the job goes on, and the job does go on.
    proc = subprocess.Popen([*_mistudio(), "demo", "--url", app.url], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=app.env)
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


def test_demo_without_an_appliance_says_how_to_start_one(tmp_path: Path) -> None:
    run = subprocess.run([*_mistudio(), "demo", "--url", f"http://127.0.0.1:{free_port()}"], capture_output=True,
                         text=True, timeout=30, env=bare_env(MISTUDIO_DATA_DIR=str(tmp_path)))
    assert run.returncode == 1
    assert "no appliance answers" in run.stderr and "mistudio up" in run.stderr, run.stderr
