"""SQL for an SAE's features: ``feature_extractions`` (one row per SAE: the extraction's state),
``features`` (one narrow row per latent: what the browser sorts, filters and searches) and
``feature_details`` (the evidence, JSON, read only for the rows shown).

Each function returns a ``Query`` (or ``Many``, for executemany) so the async API and the sync
worker run the same statements.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from appliance.data.database import Query, assignments, placeholders

Many = tuple[str, list[tuple[Any, ...]]]  # one statement, many rows of parameters

# The label shown for a feature: the user's name wins over the language model's, which wins over the
# automatic one.
LABEL = "COALESCE(name, llm_label, auto_label)"
SORTS = {
    "index": "idx",
    "frequency": "frequency",
    "max_activation": "max_activation",
    # Scores rank by the lower bound of their interval; unscored features (NULL) come last either way.
    "interpretability": "score_low",
    "detection": "detection_low",
    "fuzzing": "fuzzing_low",
    "name": LABEL,
}
NULLABLE = {"score_low", "detection_low", "fuzzing_low"}
Sort = Literal["index", "frequency", "max_activation", "interpretability", "detection", "fuzzing", "name"]
ROW_COLUMNS = (
    "idx, name, llm_label, auto_label, frequency, max_activation, mean_activation, active_samples, score, score_low,"
    " score_high, held_out_positives, detection, detection_low, detection_high, fuzzing, fuzzing_low, fuzzing_high,"
    " is_favorite"
)


# -- feature_extractions ----------------------------------------------------------------------------
def get_extraction(training_id: str) -> Query:
    return "SELECT * FROM feature_extractions WHERE training_id = ?", (training_id,)


def claim_extraction(training_id: str, config: str, job_id: str, now: float) -> Query:
    """The extraction row, (re)started by job ``job_id``: a new row, or the old one reset."""
    return (
        "INSERT INTO feature_extractions (training_id, status, config, job_id, created_at, updated_at)"
        " VALUES (?, 'extracting', ?, ?, ?, ?) ON CONFLICT (training_id) DO UPDATE SET status = 'extracting',"
        " config = excluded.config, job_id = excluded.job_id, error_message = NULL,"
        " updated_at = excluded.updated_at",
        (training_id, config, job_id, now, now),
    )


def insert_ready_extraction(training_id: str, config: str, summary: str, now: float) -> Query:
    """A finished extraction written directly (the benchmark's synthetic SAE)."""
    return (
        "INSERT INTO feature_extractions (training_id, status, config, summary, created_at, updated_at)"
        " VALUES (?, 'ready', ?, ?, ?, ?)",
        (training_id, config, summary, now, now),
    )


def finish_extraction(training_id: str, summary: str, map_status: str, now: float) -> Query:
    return (
        "UPDATE feature_extractions SET status = 'ready', summary = ?, map_status = ?, updated_at = ?"
        " WHERE training_id = ?",
        (summary, map_status, now, training_id),
    )


# -- features and feature_details: the extraction's rows -----------------------------------------
def delete_features(training_id: str) -> list[Query]:
    """A new extraction's rows replace the previous one's."""
    return [
        ("DELETE FROM features WHERE training_id = ?", (training_id,)),
        ("DELETE FROM feature_details WHERE training_id = ?", (training_id,)),
    ]


def insert_features(rows: list[tuple[Any, ...]]) -> Many:
    """Rows of (training_id, idx, frequency, max_activation, mean_activation, active_samples,
    auto_label, score, score_low, score_high, held_out_positives, search_text, map_x, map_y)."""
    return (
        "INSERT INTO features (training_id, idx, frequency, max_activation, mean_activation, active_samples,"
        " auto_label, score, score_low, score_high, held_out_positives, search_text, map_x, map_y)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        rows,
    )


def insert_details(rows: list[tuple[Any, ...]]) -> Many:
    """Rows of (training_id, idx, histogram, top_tokens, logit_lens, example), JSON text."""
    return (
        "INSERT INTO feature_details (training_id, idx, histogram, top_tokens, logit_lens, example)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        rows,
    )


def insert_browsable(rows: list[tuple[Any, ...]]) -> Many:
    """Rows with a favourite flag, judges' scores and no map (the benchmark's synthetic SAE): (training_id,
    idx, frequency, max_activation, mean_activation, active_samples, auto_label, score, score_low, score_high,
    held_out_positives, detection, detection_low, detection_high, fuzzing, fuzzing_low, fuzzing_high,
    search_text, is_favorite)."""
    return (
        "INSERT INTO features (training_id, idx, frequency, max_activation, mean_activation, active_samples,"
        " auto_label, score, score_low, score_high, held_out_positives, detection, detection_low, detection_high,"
        " fuzzing, fuzzing_low, fuzzing_high, search_text, is_favorite)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        rows,
    )


# -- one feature ------------------------------------------------------------------------------------
def get_feature(training_id: str, index: int) -> Query:
    """The feature's row joined with its evidence."""
    return (
        "SELECT * FROM features JOIN feature_details USING (training_id, idx) WHERE training_id = ? AND idx = ?",
        (training_id, index),
    )


def update_feature(training_id: str, index: int, fields: dict[str, Any]) -> Query:
    """The user's changes (name, description, is_favorite); column names come from code."""
    return (
        f"UPDATE features SET {assignments(fields)} WHERE training_id = ? AND idx = ?",
        (*fields.values(), training_id, index),
    )


def set_llm_label(training_id: str, index: int, label: str) -> Query:
    return "UPDATE features SET llm_label = ? WHERE training_id = ? AND idx = ?", (label, training_id, index)


def set_ablation(training_id: str, index: int, ablation: str) -> Query:
    return ("UPDATE feature_details SET ablation = ? WHERE training_id = ? AND idx = ?", (ablation, training_id, index))


# -- sets of features -------------------------------------------------------------------------------
def count(training_id: str) -> Query:
    """The SAE's width, as extracted (dead latents included)."""
    return "SELECT count(*) FROM features WHERE training_id = ?", (training_id,)


def most_frequent(training_id: str, top: int) -> Query:
    """Indexes of the ``top`` most frequent live features."""
    return (
        "SELECT idx FROM features WHERE training_id = ? AND frequency > 0 ORDER BY frequency DESC LIMIT ?",
        (training_id, top),
    )


def live_among(training_id: str, indices: Sequence[int]) -> Query:
    """Which of ``indices`` fire at all."""
    return (
        f"SELECT idx FROM features WHERE training_id = ? AND frequency > 0 AND idx IN ({placeholders(indices)})",
        (training_id, *indices),
    )


def labels_of(training_id: str, indices: Sequence[int]) -> Query:
    return (
        f"SELECT idx, {LABEL} AS label FROM features WHERE training_id = ? AND idx IN ({placeholders(indices)})",
        (training_id, *indices),
    )


def strengths_of(training_id: str, indices: Sequence[int]) -> Query:
    """Each feature's max activation (the unit of steering coefficients) and label."""
    return (
        f"SELECT idx, max_activation, {LABEL} AS label FROM features"
        f" WHERE training_id = ? AND idx IN ({placeholders(indices)})",
        (training_id, *indices),
    )


def live_max_activations(training_id: str) -> Query:
    return "SELECT max_activation FROM features WHERE training_id = ? AND max_activation > 0", (training_id,)


def map_points(training_id: str, index_range: tuple[int, int] | None = None) -> Query:
    """Live features' map points; ``index_range``: only latents [start, stop) (a Matryoshka prefix group)."""
    start, stop = index_range or (0, -1)
    return (
        f"SELECT idx, map_x, map_y, frequency, {LABEL} AS label, score FROM features"
        " WHERE training_id = ? AND map_x IS NOT NULL AND frequency > 0 AND idx >= ? AND (? < 0 OR idx < ?)",
        (training_id, start, stop, stop),
    )


def examples_of(training_id: str, indices: Sequence[int]) -> Query:
    """The browser's one example context per feature (JSON)."""
    return (
        f"SELECT idx, example FROM feature_details WHERE training_id = ? AND idx IN ({placeholders(indices)})",
        (training_id, *indices),
    )


# -- browsing ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Browse:
    """A page of the browser: search, filters, sort and page."""

    search: str | None = None
    sort_by: Sort = "frequency"
    order: Literal["asc", "desc"] = "desc"
    page: int = 1
    limit: int = 50
    favorites_only: bool = False
    include_dead: bool = False
    min_frequency: float | None = None
    max_frequency: float | None = None
    # Latents [start, stop): a Matryoshka SAE's prefix group is such a range (contracts.matryoshka).
    index_range: tuple[int, int] | None = None


def _where(training_id: str, browse: Browse) -> tuple[list[str], list[Any]]:
    where = ["training_id = ?", "+frequency > 0" if not browse.include_dead else "1"]
    args: list[Any] = [training_id]
    if browse.search and browse.search.strip():
        term = browse.search.strip().lower()
        if term.lstrip("#").isdigit():
            where.append("(idx = ? OR instr(search_text, ?) > 0)")
            args += [int(term.lstrip("#")), term]
        else:
            where.append(
                "(instr(search_text, ?) > 0 OR (name IS NOT NULL AND instr(lower(name), ?) > 0)"
                " OR (llm_label IS NOT NULL AND instr(lower(llm_label), ?) > 0))"
            )
            args += [term, term, term]
    if browse.favorites_only:
        where.append("is_favorite = 1")
    if browse.min_frequency is not None:
        where.append("+frequency >= ?")
        args.append(browse.min_frequency)
    if browse.max_frequency is not None:
        where.append("+frequency <= ?")
        args.append(browse.max_frequency)
    if browse.index_range is not None:
        where.append("idx >= ? AND idx < ?")
        args += list(browse.index_range)
    return where, args


@dataclass(frozen=True)
class BrowsePlan:
    """How to read one page. Two plans. Browsing (no filter): the page's indexes come in the order of a
    (training_id, key, idx) index alone (no row reads while skipping to a deep page), then their rows;
    the count is a covering-index range. Filtering: one sequential pass over the SAE's rows (WITHOUT
    ROWID: they are contiguous) that sorts the matches' indexes and counts them in the same query, then
    the page's rows (the sorter carries the index and the key, not the row's many columns); "+column"
    keeps SQLite from walking an index row by row instead."""

    filtered: bool
    rows: Query  # the page's indexes, in order; filtered: with a ``total`` column
    count: Query


def browse_plan(training_id: str, browse: Browse) -> BrowsePlan:
    where, args = _where(training_id, browse)
    clause = " AND ".join(where)
    direction = "ASC" if browse.order == "asc" else "DESC"
    window = (browse.limit, (browse.page - 1) * browse.limit)
    count_all = (f"SELECT COUNT(*) AS n FROM features WHERE {clause}", tuple(args))
    if len(where) > 2:
        return BrowsePlan(
            True,
            (
                f"SELECT idx, COUNT(*) OVER () AS total FROM features WHERE {clause}"
                f" ORDER BY {_order(SORTS[browse.sort_by], direction, filtered=True)} LIMIT ? OFFSET ?",
                (*args, *window),
            ),
            count_all,
        )
    dead = "" if browse.include_dead else " AND frequency > 0"
    return BrowsePlan(
        False,
        (
            f"SELECT idx FROM features WHERE {clause}"
            f" ORDER BY {_order(SORTS[browse.sort_by], direction, filtered=False)} LIMIT ? OFFSET ?",
            (*args, *window),
        ),
        (f"SELECT COUNT(*) AS n FROM features WHERE training_id = ?{dead}", (training_id,)),
    )


def _order(key: str, direction: str, *, filtered: bool) -> str:
    """The ORDER BY of a sort. A nullable key (a score's lower bound) puts NULL last in both directions;
    unfiltered, in the form its index serves (0014_feature_scores.sql): descending as is (SQLite's NULL is
    the smallest), ascending after "key IS NULL"."""
    if filtered:
        nulls = " NULLS LAST" if key in NULLABLE else ""
        return f"+{key} {direction}{nulls}, idx {direction}"
    if key in NULLABLE and direction == "ASC":
        return f"{key} IS NULL, {key} ASC, idx ASC"
    return f"{key} {direction}, idx {direction}"


def rows_by_index(training_id: str, indices: Sequence[int]) -> Query:
    return (
        f"SELECT {ROW_COLUMNS} FROM features WHERE training_id = ? AND idx IN ({placeholders(indices)})",
        (training_id, *indices),
    )


# -- what the steering presets read ---------------------------------------------------------------
def ready_layer(training_id: str) -> Query:
    """The SAE's layer, once its features are ready (no row before)."""
    return (
        "SELECT t.layer FROM feature_extractions e JOIN trainings t ON t.id = e.training_id"
        " WHERE e.training_id = ? AND e.status = 'ready'",
        (training_id,),
    )


def live_lenses(training_id: str) -> Query:
    """Live features with their logit lens: what seeded presets choose from."""
    return (
        "SELECT d.idx, d.logit_lens FROM feature_details d JOIN features f USING (training_id, idx)"
        " WHERE d.training_id = ? AND f.frequency > 0",
        (training_id,),
    )
