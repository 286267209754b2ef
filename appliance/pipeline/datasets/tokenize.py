"""Tokenize a dataset: token ids as Arrow on disk (read memory-mapped by extraction and training),
with the settings that made them and token statistics. Runs in the worker, batch by batch, so memory
stays flat whatever the dataset's size.
"""

from __future__ import annotations

import os
import shutil
import statistics
import time
from pathlib import Path
from typing import Any

import msgspec
import numpy as np

from appliance.contracts.events import DatasetUpdated
from appliance.contracts.params.datasets import TokenizeParams
from appliance.contracts.token_text import token_text
from appliance.contracts.tokenization import TokenizeSettings, load_tokenizer, truncated
from appliance.data import tokenizations
from appliance.data.database import Database
from appliance.data.events import insert as insert_event
from appliance.data.layout import DataLayout
from appliance.jobs.context import JobContext
from appliance.jobs.records import Job

# Sample lengths in tokens: the buckets of the Statistics tab's histogram.
HISTOGRAM_EDGES = (100, 200, 400, 600, 800, 1000)
BATCH = 1000
TOP_TOKENS = 20
META_FILE = "meta.json"


def histogram(lengths: np.ndarray) -> list[dict[str, Any]]:
    buckets, low = [], 0
    for high in (*HISTOGRAM_EDGES, None):
        count = int(((lengths >= low) & (lengths < high)).sum()) if high else int((lengths >= low).sum())
        buckets.append({"range": f"{low}-{high}" if high else f"{low}+", "count": count})
        low = high or low
    return buckets


def token_stats(
    lengths: np.ndarray, counts: np.ndarray, truncated_samples: int, tokenizer: Any, settings: TokenizeSettings
) -> dict[str, Any]:
    top = np.argsort(-counts, kind="stable")[:TOP_TOKENS]
    total = int(counts.sum())
    return {
        "tokenizer": settings.tokenizer,
        "vocab_size": int(tokenizer.get_vocab_size(with_added_tokens=True)),
        "samples": int(len(lengths)),
        "total_tokens": total,
        "avg_tokens": round(float(lengths.mean()), 1) if len(lengths) else 0,
        "min_tokens": int(lengths.min()) if len(lengths) else 0,
        "median_tokens": float(statistics.median(lengths.tolist())) if len(lengths) else 0,
        "max_tokens": int(lengths.max()) if len(lengths) else 0,
        "unique_tokens": int((counts > 0).sum()),
        "truncated_samples": truncated_samples,
        "length_unit": "tokens",
        "length_histogram": histogram(lengths),
        "top_tokens": [
            {
                "id": int(i),
                "token": tokenizer.id_to_token(int(i)) or "",
                "text": token_text(tokenizer, int(i)),  # a partial character as byte escapes, never U+FFFD
                "count": int(counts[i]),
                "share": round(float(counts[i]) / total, 5) if total else 0,
            }
            for i in top
            if counts[i] > 0
        ],
    }


def _real_token_counts(ids: Any, real: np.ndarray, vocab: int) -> np.ndarray:
    """Occurrences of each token id, padding excluded. Padding goes on the right, so a sample's real
    tokens are its first ``real`` ids (vectorised: no Python loop over tokens)."""
    flat = ids.flatten().to_numpy()
    sizes = np.diff(ids.offsets.to_numpy())
    position = np.arange(len(flat)) - np.repeat(ids.offsets.to_numpy()[:-1], sizes)
    kept = flat[position < np.repeat(real, sizes)]
    return np.bincount(kept, minlength=vocab)[:vocab]


def _partial(final: Path) -> Path:
    """Where a run writes until it completes: the earlier token ids stay readable meanwhile."""
    return final.with_name(final.name + ".partial")


def run(ctx: JobContext, params: TokenizeParams) -> dict[str, Any]:
    import pyarrow as pa
    from datasets import load_from_disk

    settings = params.settings
    data_dir = ctx.layout.root
    tokenizer = load_tokenizer(settings.tokenizer, data_dir, settings)
    data = load_from_disk(str(ctx.layout.dataset_arrow(params.dataset_id)))  # memory-mapped
    total = len(data)
    final = ctx.layout.tokenized(params.dataset_id, settings.tokenizer)
    partial = _partial(final)
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    fields = [pa.field("input_ids", pa.list_(pa.int32())), pa.field("length", pa.int32())]
    if settings.return_attention_mask:
        fields.append(pa.field("attention_mask", pa.list_(pa.int8())))
    schema = pa.schema(fields)
    counts = np.zeros(tokenizer.get_vocab_size(with_added_tokens=True), dtype=np.int64)
    lengths = np.zeros(total, dtype=np.int32)
    truncated_samples = 0
    ctx.progress(0.01, f"Tokenizing {total:,} samples with {settings.tokenizer}", force=True)
    data_file = ctx.layout.tokenized_arrow(params.dataset_id, settings.tokenizer).name
    with pa.OSFile(str(partial / data_file), "wb") as sink, pa.ipc.new_stream(sink, schema) as writer:
        for start in range(0, total, BATCH):
            ctx.check()
            texts = ["" if t is None else t for t in data[start : start + BATCH]["text"]]
            encodings = tokenizer.encode_batch(texts, add_special_tokens=settings.add_special_tokens)
            real = np.array([sum(e.attention_mask) for e in encodings], dtype=np.int32)
            lengths[start : start + len(encodings)] = real
            truncated_samples += sum(truncated(encodings, texts, settings, data_dir))
            ids = pa.array([e.ids for e in encodings], pa.list_(pa.int32()))
            counts += _real_token_counts(ids, real, len(counts))
            columns = [ids, pa.array(real, pa.int32())]
            if settings.return_attention_mask:
                columns.append(pa.array([e.attention_mask for e in encodings], pa.list_(pa.int8())))
            writer.write_batch(pa.record_batch(columns, schema=schema))
            done = start + len(encodings)
            ctx.progress(0.02 + 0.95 * done / total, f"Tokenized {done:,} of {total:,} samples", samples=done)
    stats = token_stats(lengths, counts, truncated_samples, tokenizer, settings)
    meta = {"settings": msgspec.to_builtins(settings), "stats": stats}
    (partial / META_FILE).write_bytes(msgspec.json.encode(meta))
    # The new ids replace an earlier tokenization only once complete.
    shutil.rmtree(final, ignore_errors=True)
    os.replace(partial, final)
    now = time.time()
    # The tokenization becomes ready and the UI hears of it in one commit.
    ctx.db.write(
        tokenizations.finish(
            params.dataset_id,
            settings.tokenizer,
            "ready",
            settings=msgspec.json.encode(meta["settings"]).decode(),
            stats=msgspec.json.encode(stats).decode(),
        ),
        insert_event(
            ctx.topic,
            "dataset.updated",
            DatasetUpdated(dataset_id=params.dataset_id, tokenization="ready", tokenizer=settings.tokenizer),
            ctx.job_id,
            True,
            now,
        ),
    )
    return {"dataset_id": params.dataset_id, "tokenizer": settings.tokenizer, "total_tokens": stats["total_tokens"]}


def cleanup(job: Job, params: TokenizeParams, layout: DataLayout, db: Database) -> None:
    """A failed or cancelled run leaves the previous tokenization (if any) as it was: its row went back
    to ready, or to error, when the job ended (appliance.jobs.finalize); the partial output goes here."""
    shutil.rmtree(_partial(layout.tokenized(params.dataset_id, params.settings.tokenizer)), ignore_errors=True)
