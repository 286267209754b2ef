"""The fake hub answers the real clients: `datasets.load_dataset` (parquet, jsonl, streaming), gated
and missing repos, and `huggingface_hub.snapshot_download` of a model. The clients run in a
subprocess, as in the worker, because HF_ENDPOINT is read when huggingface_hub is imported."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.fakehub import FakeHub, Repo

ROWS = [{"text": f"sample number {i} about {'cats' if i % 2 else 'dogs'}"} for i in range(20)]


def _parquet(rows: list[dict]) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows), buffer)
    return buffer.getvalue()


@pytest.fixture
def hub() -> Iterator[FakeHub]:
    hub = FakeHub().start()
    hub.add(Repo("acme/tiny-parquet", "dataset", {"data/train-00000-of-00001.parquet": _parquet(ROWS)}))
    jsonl = "".join(json.dumps(row) + "\n" for row in ROWS).encode()
    hub.add(Repo("acme/tiny-jsonl", "dataset", {"data/train.jsonl": jsonl}))
    hub.add(Repo("acme/gated", "dataset", {"data/train.jsonl": jsonl}, token="hf_secret"))
    hub.add(
        Repo(
            "acme/tiny-model",
            "model",
            {"config.json": b'{"model_type": "gpt2"}', "model.safetensors": b"\x00" * 4096, "README.md": b"# tiny"},
        )
    )
    yield hub
    hub.stop()


def run_client(hub: FakeHub, tmp_path: Path, code: str) -> dict:
    env = {
        **os.environ,
        "HF_ENDPOINT": hub.url,
        "HF_HOME": str(tmp_path / "hf"),
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_DATASETS_CACHE": str(tmp_path / "hf/datasets"),
    }
    env.pop("HF_TOKEN", None)
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_load_parquet_and_jsonl_datasets(hub: FakeHub, tmp_path: Path) -> None:
    out = run_client(
        hub,
        tmp_path,
        """
import json
from datasets import load_dataset
parquet = load_dataset("acme/tiny-parquet", split="train")
jsonl = load_dataset("acme/tiny-jsonl", split="train")
streamed = [row["text"] for row in load_dataset("acme/tiny-jsonl", split="train", streaming=True).take(3)]
print(json.dumps({"parquet": list(parquet["text"]), "jsonl": list(jsonl["text"]), "streamed": streamed}))
""",
    )
    texts = [row["text"] for row in ROWS]
    assert out == {"parquet": texts, "jsonl": texts, "streamed": texts[:3]}


def test_gated_repo_needs_the_token_and_missing_repo_is_clear(hub: FakeHub, tmp_path: Path) -> None:
    out = run_client(
        hub,
        tmp_path,
        """
import json
from datasets import load_dataset
result = {}
for name, kwargs in [("anonymous", {}), ("with_token", {"token": "hf_secret"})]:
    try:
        result[name] = len(load_dataset("acme/gated", split="train", **kwargs))
    except Exception as exc:
        result[name] = type(exc).__name__ + ": " + str(exc)[:200]
try:
    load_dataset("acme/does-not-exist", split="train")
except Exception as exc:
    result["missing"] = type(exc).__name__ + ": " + str(exc)[:200]
print(json.dumps(result))
""",
    )
    assert out["with_token"] == len(ROWS)
    assert isinstance(out["anonymous"], str) and ("Gated" in out["anonymous"] or "authenticated" in out["anonymous"])
    assert "NotFound" in out["missing"] or "doesn't exist" in out["missing"]
    assert not any("hf_secret" in line for line in hub.requests)  # tokens travel in headers, not URLs


def test_snapshot_download_of_a_model(hub: FakeHub, tmp_path: Path) -> None:
    out = run_client(
        hub,
        tmp_path,
        f"""
import json, os
from huggingface_hub import snapshot_download
path = snapshot_download("acme/tiny-model", allow_patterns=["*.json", "*.safetensors"],
                         local_dir={str(tmp_path / "model")!r})
print(json.dumps(sorted(f for f in os.listdir(path) if not f.startswith("."))))
""",
    )
    assert out == ["config.json", "model.safetensors"]
    assert (tmp_path / "model/model.safetensors").read_bytes() == b"\x00" * 4096
