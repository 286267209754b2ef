"""``mistudio bench datasets``: ingestion rate, sample search latency and tokenization rate over a
large dataset.

Ingestion of a generated JSONL file through the API and worker (Arrow + SQLite FTS5 + statistics) is
compared with a bare ``datasets`` load of the same file in this process. Search: full-text queries
(common, rare and multi-word) over the dataset's samples, timed at the client. Tokenization by the
worker (ids to Arrow, statistics) is compared with a bare ``encode_batch`` of the same texts.

Floors: ingestion's is a bare ``datasets`` load of the same file, tokenization's a bare
``encode_batch`` of the same texts with the same settings; search and browse are judged against the
absolute target. Every search and browse answer is checked: a non-200 is counted, not timed, and
makes its figure a MISS.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from appliance.commands.bench.harness import (
    Appliance,
    BenchError,
    Figure,
    finish,
    machine_lines,
    percentile,
    progress,
    section,
    timed_get,
    wait_job,
)

WORDS = (
    "the cat dog bird model layer feature sparse token attention residual neuron circuit steering "
    "vector latent dictionary activation gradient memory device jetson orin train loss"
).split()


def _ts(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def latency_figure(name: str, latencies: list[float], failures: list[str], target: float, note: str) -> Figure:
    """p95 of the answered requests; each failed one is an error, so the figure is a MISS."""
    note = f"p50 {percentile(latencies, 50):.1f} ms, {len(latencies)} answered; {note}"
    if failures:
        note += f"; first failure: {failures[0]}"
    return Figure(name, percentile(latencies, 95), "ms", target=target, errors=len(failures), note=note)


def _wait(client: httpx.Client, response: httpx.Response, what: str) -> dict:
    """The job a 202 answer started, once it ended; BenchError unless it completed."""
    job_id = response.json().get("data", {}).get("job_id") if response.status_code in (200, 202) else None
    if not job_id:
        raise BenchError(f"{what}: HTTP {response.status_code} {response.text[:300]}")
    return wait_job(client, job_id, what)


def _bare_tokenize(path: Path, settings: dict[str, Any], data_dir: Path) -> float:
    from appliance.contracts.tokenization import TokenizeSettings, load_tokenizer

    config = TokenizeSettings(**settings)
    tokenizer = load_tokenizer(config.tokenizer, data_dir, config)
    texts = [json.loads(line)["text"] for line in path.open()]
    started = time.perf_counter()
    for start in range(0, len(texts), 1000):
        tokenizer.encode_batch(texts[start : start + 1000], add_special_tokens=config.add_special_tokens)
    return time.perf_counter() - started


def run(args: argparse.Namespace) -> int:
    n = getattr(args, "samples", None) or 100_000
    rng = random.Random(0)
    print(section("mistudio bench datasets"))
    for line in machine_lines():
        print(line)
    with Appliance() as app:
        imports = app.data_dir / "imports"
        imports.mkdir(parents=True, exist_ok=True)
        path = imports / "bench.jsonl"
        progress(f"writing {n:,} samples")
        with path.open("w") as handle:
            for i in range(n):
                words = rng.choices(WORDS, k=rng.randint(8, 60))
                words.append(f"unique{i}")
                handle.write(json.dumps({"text": " ".join(words)}) + "\n")
        progress("bare datasets.load_dataset of the same file")
        from datasets import load_dataset

        started = time.perf_counter()
        load_dataset("json", data_files=str(path), split="train", cache_dir=str(app.data_dir / "bench-cache"))
        bare_s = time.perf_counter() - started
        client = httpx.Client(base_url=app.url, timeout=600, headers=app.auth_headers())
        progress("import through the API and the worker")
        job = _wait(client, client.post("/api/datasets/import", json={"path": "bench.jsonl"}), "import")
        ingest_s = _ts(job["finished_at"]) - _ts(job["started_at"])
        dataset_id = job["target"]["id"]
        queries = ["cat", "sparse feature", "jetson orin train", f"unique{n // 2}", "zzznomatch", "latent", "the"]
        progress("search: 50 rounds of 7 queries")
        latencies: list[float] = []
        failed_searches: list[str] = []
        url = f"/api/datasets/{dataset_id}/samples"
        for _ in range(50):
            for query in queries:
                timed_get(client, url, {"search": query, "limit": 10}, latencies, failed_searches)
        browse: list[float] = []
        failed_pages: list[str] = []
        for page in range(1, 201, 10):
            timed_get(client, url, {"page": page * 20, "limit": 10}, browse, failed_pages)
        progress("tokenize through the API and the worker (demo tokenizer, 512, no padding)")
        settings = {"tokenizer": "demo", "max_length": 512, "padding": "do_not_pad"}
        job = _wait(client, client.post(f"/api/datasets/{dataset_id}/tokenize", json=settings), "tokenization")
        client.close()
        tokenize_s = _ts(job["finished_at"]) - _ts(job["started_at"])
        tokens = job["result"]["total_tokens"]
        progress("bare encode_batch of the same texts in this process")
        bare_tokenize_s = _bare_tokenize(path, settings, app.data_dir)
    figures = [
        latency_figure(f"search p95 over {n:,} samples", latencies, failed_searches, 50, f"{len(queries)} queries"),
        latency_figure("browse page p95", browse, failed_pages, 50, "deep pages, no search"),
        Figure(
            "ingestion", n / ingest_s, "samples/s", digits=0, note=f"{ingest_s:.1f} s: Arrow + SQLite FTS5 + statistics"
        ),
        Figure("bare datasets load", n / bare_s, "samples/s", digits=0, note=f"{bare_s:.1f} s, same file"),
        Figure("ingestion / bare load", bare_s / ingest_s, "x", digits=2, note="ratio of rates"),
        Figure(
            "tokenization",
            tokens / tokenize_s,
            "tokens/s",
            digits=0,
            note=f"{tokenize_s:.1f} s: ids as Arrow + token statistics",
        ),
        Figure("bare encode_batch", tokens / bare_tokenize_s, "tokens/s", digits=0, note=f"{bare_tokenize_s:.1f} s"),
        Figure("tokenization / bare encode", bare_tokenize_s / tokenize_s, "x", digits=2, note="ratio of rates"),
    ]
    return finish("datasets", figures, settings={"samples": n, **app.passed_settings()})
