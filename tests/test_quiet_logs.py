"""A quiet service log: `mistudio up` through a Hub download (fake hub), a tokenization, a model load, a
short training and a generation prints only the appliance's own lines (no progress bars, no library
warnings); library noise shows at MISTUDIO_LOG_LEVEL=debug. And `mistudio jobs` lines its table up."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance.commands import logs
from appliance.data import jobs as job_sql
from appliance.data import migrate
from appliance.data.database import Database
from tests.fakehub import FakeHub, Repo
from tests.support import Appliance, downloaded, wait_until
from tests.test_fakehub import ROWS
from tests.test_up import Up

# The appliance's own lines: what `up` says, and log records of its loggers (and uvicorn's, the API
# server it runs) in the one format of appliance.commands.cli.
OWN_LINE = re.compile(
    r"^(mistudio: .*"
    r"|\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR|CRITICAL) (mistudio[\w.]*|uvicorn\.error): .*)$"
)
ANIMALS = ("cat", "dog", "fox")
NOISE = re.compile(r"it/s\]|s/it\]|\d+%\|[^|]*\||Warning|warn|tqdm|past_key_values|attention.mask", re.I)


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeHub]:
    import json

    hub = FakeHub().start()
    rows = [{"text": f"{row['text']}, story {i}: the {ANIMALS[i % 3]} ran home"} for i, row in enumerate(ROWS * 20)]
    hub.add(
        Repo("acme/tiny-jsonl", "dataset", {"data/train.jsonl": "".join(json.dumps(r) + "\n" for r in rows).encode()})
    )
    hub.add(Repo("acme/tiny-gpt2", "model", _tiny_gpt2(tmp_path_factory.mktemp("tiny"))))
    yield hub
    hub.stop()


def _tiny_gpt2(folder: Path) -> dict[str, bytes]:
    """A 2-layer GPT-2 of width 8 with the demo tokenizer: its SAE (8 latents) is too small for the
    feature map, whose UMAP would cost the test most of a minute."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    from appliance.demo_kit import TOKENIZER_FILE

    torch.manual_seed(0)
    # pad_token_id 0 is the demo tokenizer's <|endoftext|>, which starts every prompt: transformers
    # advises an attention mask for such input, as it did for the demo model.
    config = GPT2Config(vocab_size=4096, n_embd=8, n_layer=2, n_head=2, n_positions=64, pad_token_id=0)
    GPT2LMHeadModel(config).save_pretrained(folder)
    PreTrainedTokenizerFast(tokenizer_file=str(TOKENIZER_FILE), eos_token="<|endoftext|>").save_pretrained(folder)
    return {str(f.relative_to(folder)): f.read_bytes() for f in folder.rglob("*") if f.is_file()}


def _train(app: Appliance, model: dict, dataset: dict) -> str:
    body = {
        "model_id": model["id"],
        "dataset_id": dataset["id"],
        "layer": 1,
        "encoder_type": "topk",
        "max_samples": 400,
        "context_length": 32,
        "hyperparameters": {"k": 4, "expansion_factor": 1, "batch_size": 128, "total_steps": 40, "log_every": 20},
    }
    return app.completed(app.post("/api/training/start", json=body), timeout=300)["target"]["id"]


def _generate(app: Appliance, training: str) -> None:
    body = {"training_id": training, "prompt": "Once upon a time", "max_tokens": 8, "seed": 1}
    generated = app.post("/api/steering/generate", json={**body, "features": [{"index": 0, "coefficient": 2.0}]})
    assert generated.status_code == 200, generated.text


def _day(app: Appliance) -> tuple[dict, dict, str]:
    """What a new user does on a first day: download, tokenize, load a model, train a little, generate.
    Returns (model, dataset, the training with its features)."""
    job, dataset = downloaded(app, "datasets", 120, repo_id="acme/tiny-jsonl")
    assert job["status"] == "completed", job["error"]
    job, model = downloaded(app, "models", 180, repo_id="acme/tiny-gpt2")
    assert job["status"] == "completed", job["error"]
    tokenize = {"tokenizer": "demo", "max_length": 32, "padding": "do_not_pad"}
    app.completed(app.post(f"/api/datasets/{dataset['id']}/tokenize", json=tokenize), timeout=120)
    training = _train(app, model, dataset)
    extract = {"training_id": training, "eval_samples": 16, "context_length": 32}
    app.completed(app.post("/api/features/extract", json=extract), timeout=300)
    _generate(app, training)
    return model, dataset, training


def _running(app: Appliance, up: Up) -> None:
    up.wait_for("API started (pid ")
    wait_until(up.live, timeout=40, what="the API")


def test_up_prints_only_the_appliances_own_lines(hub: FakeHub, make_appliance, tmp_path: Path) -> None:
    app: Appliance = make_appliance({**hub.env, "MISTUDIO_MEMORY_TOTAL_MB": "8192"})
    up = Up(app, tmp_path)
    try:
        _running(app, up)
        model, dataset, training = _day(app)
    finally:
        up.close()
    text = up.text()
    strangers = [line for line in text.splitlines() if not OWN_LINE.match(line) or NOISE.search(line)]
    assert not strangers, "\n".join(strangers) + "\n--- whole log ---\n" + text
    assert "\r" not in text  # no progress bar redraws

    # At debug the libraries speak (through the one format), but no warning is our code's fault: a
    # fresh worker trains and generates again, where torch warned of float() on a tensor that
    # requires grad, and transformers of the KV cache's old name and of a missing attention mask.
    (tmp_path / "debug").mkdir()
    up = Up(app, tmp_path / "debug", MISTUDIO_LOG_LEVEL="debug")
    try:
        _running(app, up)
        _train(app, model, dataset)
        _generate(app, training)
    finally:
        up.close()
    text = up.text()
    assert re.search(r" DEBUG (huey|httpcore|asyncio|uvicorn)", text), text  # library chatter shows at debug
    ours = re.compile(r"requires_grad=True to a scalar|past_key_values|cache_params|attention_mask|appliance/.*Warning")
    assert not [line for line in text.splitlines() if ours.search(line)], text
    assert "\r" not in text  # bars stay off at debug too


LIBRARY_TALK = """
import logging, warnings
from appliance.commands import logs
logs.configure({level!r})
logging.getLogger("mistudio.jobs").info("own line")
logging.getLogger("huey").info("Executing appliance.jobs.queue.run_job")
logging.getLogger("transformers.modeling_utils").warning("a library warning")
warnings.warn("a torch UserWarning", UserWarning)
logging.getLogger("datasets").error("a library error")
import tqdm
for _ in tqdm.tqdm(range(3), desc="Saving the dataset"):
    pass
"""


@pytest.mark.parametrize("level", ["info", "debug"])
def test_library_noise_shows_only_at_debug(level: str) -> None:
    env = {k: v for k, v in os.environ.items() if k not in logs.QUIET_ENV and k not in logs.QUIET_LIBRARY_ENV}
    run = subprocess.run(
        [sys.executable, "-c", LIBRARY_TALK.format(level=level)], capture_output=True, text=True, timeout=60, env=env
    )
    assert run.returncode == 0, run.stderr
    out = run.stdout + run.stderr
    assert "INFO mistudio.jobs: own line" in out and "ERROR datasets: a library error" in out, out
    noise = ("INFO huey: Executing", "WARNING transformers.modeling_utils: a library warning", "a torch UserWarning")
    if level == "debug":
        assert all(line in out for line in noise) and "WARNING py.warnings: " in out, out
    else:
        assert not any(line in out for line in noise), out
    assert "Saving the dataset" not in out  # progress bars are off at every level


def test_jobs_table_columns_line_up_for_long_kinds(tmp_path: Path) -> None:
    """`mistudio jobs`: each column starts where its header does, however long a kind or status is."""
    data = tmp_path / "data"
    data.mkdir()
    migrate(data / "mistudio.db")
    db = Database(data / "mistudio.db")
    now = time.time()
    for n, kind in enumerate(["selftest", "features.explain", "training.run", "activations.extract"]):
        db.execute(job_sql.insert_job(f"job_{n:010d}", kind, "interactive", {}, None, now + n))
    run = subprocess.run(
        [sys.executable, "-m", "appliance", "jobs"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "MISTUDIO_DATA_DIR": str(data)},
    )
    assert run.returncode == 0, run.stderr
    header, *rows = run.stdout.splitlines()
    assert len(rows) == 4, run.stdout
    starts = [header.index(name) for name in ("KIND", "STATUS", "PROGRESS", "CREATED", "MESSAGE")]
    for row in rows:
        kind_at, status_at, _, created_at, _ = starts
        assert row[kind_at - 2 : kind_at] == "  " and row[kind_at] != " ", (header, row)
        assert row[status_at:].startswith("queued") and row[status_at - 2 : status_at] == "  ", (header, row)
        assert re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", row[created_at:]), (header, row)
    progress_end = starts[2] + len("PROGRESS")
    assert all(row[:progress_end].endswith("0.0%") for row in rows), run.stdout  # right-aligned under PROGRESS
