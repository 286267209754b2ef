"""SQL for ``dataset_samples`` and its full-text index ``samples_fts`` (kept in step by triggers):
the rows the dataset browser pages through and searches."""

from __future__ import annotations

from typing import Any

from appliance.data.database import Query

# Sample rows for one executemany: (dataset_id, idx, split, length, text, metadata JSON or None).
SampleRow = tuple[str, int, str, int, str, str | None]
INSERT = "INSERT INTO dataset_samples (dataset_id, idx, split, length, text, metadata) VALUES (?, ?, ?, ?, ?, ?)"


def delete_for(dataset_id: str) -> Query:
    return "DELETE FROM dataset_samples WHERE dataset_id = ?", (dataset_id,)


def fts_query(search: str) -> str:
    """User words -> an FTS5 query of prefix terms, all required (quotes make any input safe)."""
    words = [w.replace('"', '""') for w in search.split() if w.strip()]
    return " ".join(f'"{w}"*' for w in words)


def _filter(dataset_id: str, split: str | None, match: str) -> tuple[str, str, list[Any]]:
    """FROM, WHERE and parameters of a page or a count."""
    where, params = ["s.dataset_id = ?"], [dataset_id]
    if split:
        where.append("s.split = ?")
        params.append(split)
    source = "dataset_samples s"
    if match:
        # CROSS JOIN makes the full-text index drive the join (left to itself SQLite walks the
        # dataset's rows and runs MATCH per row: minutes on 100k samples).
        source = "samples_fts f CROSS JOIN dataset_samples s ON s.rowid = f.rowid"
        where.insert(0, "samples_fts MATCH ?")
        params.insert(0, match)
    return source, " AND ".join(where), params


def page(dataset_id: str, split: str | None, match: str, page: int, limit: int) -> Query:
    """One page of samples (plus one row, which says whether a next page exists). ``match`` is an
    FTS5 query (``fts_query``) or empty."""
    source, clause, params = _filter(dataset_id, split, match)
    offset = (page - 1) * limit
    if not match and not split:
        # idx runs 0..n-1 within a dataset: seek to the page instead of skipping OFFSET rows.
        clause += " AND s.idx >= ?"
        params.append(offset)
        offset = 0
    # FTS5 yields rowids in order, and rowids follow sample order within a dataset: no sort then.
    order = "f.rowid" if match else "s.idx"
    return (
        f"SELECT s.idx, s.split, s.length, s.text, s.metadata FROM {source} WHERE {clause}"
        f" ORDER BY {order} LIMIT ? OFFSET ?",
        (*params, limit + 1, offset),
    )


def count_matches(dataset_id: str, split: str | None, match: str, cap: int) -> Query:
    """How many samples match, counted up to ``cap`` + 1 (past the cap the answer is "at least")."""
    source, clause, params = _filter(dataset_id, split, match)
    return f"SELECT count(*) FROM (SELECT 1 FROM {source} WHERE {clause} LIMIT ?)", (*params, cap + 1)
