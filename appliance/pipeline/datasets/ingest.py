"""Import a local file as a dataset: Arrow on disk (memory-mapped when read), samples in SQLite for
the browser and its full-text search, statistics computed once at ingestion. Runs in the worker."""

from __future__ import annotations

import shutil
import statistics
import time
from collections import Counter
from pathlib import Path
from typing import Any

import msgspec

from appliance.contracts.events import DatasetUpdated
from appliance.contracts.params.datasets import DemoParams, ImportParams
from appliance.data import datasets, samples
from appliance.data.database import Database
from appliance.data.events import insert as insert_event
from appliance.data.layout import DataLayout
from appliance.errors import ValidationError
from appliance.jobs.context import JobContext
from appliance.jobs.records import Job

# Sample lengths in characters: the buckets of the Statistics tab's histogram.
HISTOGRAM_EDGES = (100, 200, 400, 600, 800, 1000)
BATCH = 2000
SCAN = 100_000  # rows per look for rows without text (one column, vectorised)


def _read(params: ImportParams, cache_dir: Path) -> Any:
    from datasets import load_dataset

    path = Path(params.path)
    try:
        if params.format == "text":
            # The text builder reads in chunks (a large file never sits in memory whole); blank lines
            # and blocks are dropped, and surrounding whitespace with them.
            data = load_dataset(
                "text",
                data_files=str(path),
                split="train",
                cache_dir=str(cache_dir),
                sample_by="paragraph" if params.txt_mode == "paragraph" else "line",
            )
            return data.map(lambda b: {"text": [t.strip() for t in b["text"]]}, batched=True).filter(
                lambda b: [bool(t) for t in b["text"]], batched=True
            )
        data = load_dataset(params.format, data_files=str(path), split="train", cache_dir=str(cache_dir))
    except Exception as exc:  # noqa: BLE001 - the library's parse errors become one clear message
        raise ValidationError(
            f"Could not read the {params.format} file: {type(exc).__name__}: {str(exc)[:300]}",
            details={"field": "path"},
        ) from None
    if params.text_column not in data.column_names:
        raise ValidationError(
            f"No column {params.text_column!r}; the file has: {', '.join(data.column_names)}",
            details={"field": "text_column", "columns": data.column_names},
        )
    return data


def without_empty(data: Any, column: str) -> tuple[Any, dict[str, int]]:
    """``data`` without the rows that have no text in ``column``, and how many of each reason: "missing"
    (no value: a JSON line naming another field, an empty CSV cell, a null) and "blank" (empty or only
    whitespace). Such rows are left out and counted, never kept as empty samples."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    missing = blank = 0
    kept: list[Any] = []
    view = data.with_format("arrow")
    for start in range(0, len(data), SCAN):
        values = view[start : start + SCAN].column(column)
        filled = pc.is_valid(values)
        if pa.types.is_string(values.type) or pa.types.is_large_string(values.type):
            has_text = pc.greater(pc.utf8_length(pc.utf8_trim_whitespace(values)), 0)
            filled = pc.fill_null(pc.and_(filled, has_text), False)
        keep = np.asarray(filled.to_numpy(zero_copy_only=False), dtype=bool)
        missing += values.null_count
        blank += len(keep) - int(keep.sum()) - values.null_count
        kept.append(np.flatnonzero(keep) + start)
    skipped = {"missing": missing, "blank": blank}
    if missing or blank:
        data = data.select(np.concatenate(kept) if kept else [])
    return data, skipped


def describe_skipped(skipped: dict[str, int]) -> str:
    """ "3 rows: 2 without text, 1 blank" """
    parts = [f"{skipped['missing']:,} without text"] if skipped["missing"] else []
    parts += [f"{skipped['blank']:,} blank"] if skipped["blank"] else []
    total = skipped["missing"] + skipped["blank"]
    return f"{total:,} row{'s' if total != 1 else ''}: {', '.join(parts)}"


def compute_stats(lengths: list[int], splits: Counter[str]) -> dict[str, Any]:
    histogram = []
    low = 0
    for high in (*HISTOGRAM_EDGES, None):
        count = sum(1 for n in lengths if n >= low and (high is None or n < high))
        histogram.append({"range": f"{low}-{high}" if high else f"{low}+", "count": count})
        low = high or low
    return {
        "samples": len(lengths),
        "total_chars": sum(lengths),
        "avg_length": round(sum(lengths) / len(lengths), 1) if lengths else 0,
        "min_length": min(lengths, default=0),
        "median_length": statistics.median(lengths) if lengths else 0,
        "max_length": max(lengths, default=0),
        "length_unit": "characters",
        "length_histogram": histogram,
        "splits": dict(splits),
    }


def _sample_rows(
    dataset_id: str,
    start: int,
    batch: dict[str, list[Any]],
    split: str,
    split_column: str | None,
    source_column: str | None,
) -> list[samples.SampleRow]:
    texts = ["" if t is None else str(t) for t in batch["text"]]
    names = batch[split_column] if split_column else [split] * len(texts)
    sources = batch[source_column] if source_column else [None] * len(texts)
    return [
        (
            dataset_id,
            start + i,
            names[i],
            len(t),
            t,
            msgspec.json.encode({"source": sources[i]}).decode() if sources[i] else None,
        )
        for i, t in enumerate(texts)
    ]


def ingest(
    ctx: JobContext,
    dataset_id: str,
    data: Any,
    column: str,
    *,
    split: str = "train",
    split_column: str | None = None,
    source_column: str | None = None,
) -> dict[str, Any]:
    """Store ``data[column]`` as the dataset: Arrow on disk, samples in SQLite, statistics; mark it ready.

    Idempotent: a re-run after a crash replaces whatever an earlier attempt left."""
    root = ctx.layout.dataset(dataset_id)
    keep = [c for c in (column, split_column, source_column) if c]
    data = data.select_columns(keep)
    if column != "text":
        data = data.rename_column(column, "text")
    if len(data) == 0:
        raise ValidationError("The dataset has no samples", details={"field": "path"})
    data, skipped = without_empty(data, "text")
    total = len(data)
    if total == 0:
        raise ValidationError(
            f"No row has text in column {column!r} ({describe_skipped(skipped)}): name the column that holds the text",
            details={"field": "text_column", "skipped_rows": skipped},
        )
    ctx.check()
    arrow = ctx.layout.dataset_arrow(dataset_id)
    shutil.rmtree(arrow, ignore_errors=True)
    data.save_to_disk(str(arrow))
    shutil.rmtree(ctx.layout.dataset_cache(dataset_id), ignore_errors=True)
    ctx.db.execute(samples.delete_for(dataset_id))
    lengths: list[int] = []
    splits: Counter[str] = Counter()
    for start in range(0, total, BATCH):
        ctx.check()
        rows = _sample_rows(dataset_id, start, data[start : start + BATCH], split, split_column, source_column)
        lengths.extend(r[3] for r in rows)
        splits.update(r[2] for r in rows)
        with ctx.db.transaction() as conn:
            conn.executemany(samples.INSERT, rows)
        done = min(total, start + BATCH)
        ctx.progress(0.5 + 0.45 * done / total, f"Ingested {done:,} of {total:,} samples", samples=done)
    stats = msgspec.json.encode({**compute_stats(lengths, splits), "skipped_rows": skipped}).decode()
    size = sum(f.stat().st_size for f in root.rglob("*") if f.is_file())
    now = time.time()
    # The row becomes ready and the UI hears of it in one commit: no client sees one without the other.
    ctx.db.write(
        datasets.set_ready(dataset_id, total, size, stats, now),
        insert_event(
            ctx.topic, "dataset.updated", DatasetUpdated(dataset_id=dataset_id, status="ready"), ctx.job_id, True, now
        ),
    )
    if skipped["missing"] or skipped["blank"]:
        ctx.progress(1.0, f"Ingested {total:,} samples; skipped {describe_skipped(skipped)}", force=True)
    return {"dataset_id": dataset_id, "samples": total, "skipped_rows": skipped}


def run(ctx: JobContext, params: ImportParams) -> dict[str, Any]:
    ctx.progress(0.02, "Reading the file", force=True)
    data = _read(params, ctx.layout.dataset_cache(params.dataset_id))
    result = ingest(ctx, params.dataset_id, data, params.text_column if params.format != "text" else "text")
    if params.remove_source:
        shutil.rmtree(Path(params.path).parent, ignore_errors=True)
    return result


def build_demo(ctx: JobContext, params: DemoParams) -> dict[str, Any]:
    """The demo dataset, from this device's Python standard library (no network)."""
    from datasets import Dataset

    from appliance.pipeline.datasets.demo_corpus import samples as corpus

    ctx.progress(0.02, "Reading the Python standard library", force=True)
    data = Dataset.from_list(list(corpus()))
    ctx.progress(0.4, f"Found {len(data):,} texts", force=True)
    return ingest(ctx, params.dataset_id, data, "text", split_column="split", source_column="source")


def cleanup(job: Job, params: ImportParams | DemoParams, layout: DataLayout, db: Database) -> None:
    """A failed or cancelled import leaves nothing behind. The row (and with it, by ON DELETE CASCADE,
    the samples) went with the job's end (appliance.jobs.finalize); the files written since go here."""
    shutil.rmtree(layout.dataset(params.dataset_id), ignore_errors=True)
    shutil.rmtree(layout.upload(params.dataset_id), ignore_errors=True)
