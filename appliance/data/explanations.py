"""SQL for ``feature_explanations``: a language model's explanation of a feature and its judges' scores, one
row per feature and explainer (0015_feature_explanations.sql), and the features a run explains.

Writing a result also sets the feature's ``llm_label`` (the latest explanation) and its detection and
fuzzing columns, in the same transaction (``result``). Text is scrubbed of stored secrets first: an
endpoint's error may quote the key back.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from appliance.data.database import Query, placeholders
from appliance.data.redact import scrub

# Results a later run keeps (its cache): a judgement, even a malformed one, is an answer; the failures of
# the endpoint (timeout, unauthorized, unreachable, upstream_error) are tried again.
FINAL = ("scored", "explained", "malformed")
SCORES = ("detection", "detection_low", "detection_high", "fuzzing", "fuzzing_low", "fuzzing_high")


@dataclass(frozen=True)
class Result:
    """One feature's outcome, as a run writes it."""

    training_id: str
    index: int
    explainer: str
    state: str
    message: str | None = None
    explanation: str | None = None
    method: str | None = None
    scores: tuple[float | None, ...] = (None,) * len(SCORES)  # in SCORES' order
    judged: str | None = None  # JSON
    explainer_examples: str | None = None  # JSON
    calls: int = 0


def result(row: Result, now: float) -> list[Query]:
    """The explanation row (replacing this explainer's earlier one) and, when it has an explanation, the
    feature's llm_label and judges' scores: a run's results are what the browser shows."""
    queries: list[Query] = [
        (
            "INSERT OR REPLACE INTO feature_explanations (training_id, idx, explainer, state, message, explanation,"
            f" method, {', '.join(SCORES)}, judged, explainer_examples, calls, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                row.training_id,
                row.index,
                row.explainer,
                row.state,
                scrub(row.message),
                row.explanation,
                row.method,
                *row.scores,
                row.judged,
                row.explainer_examples,
                row.calls,
                now,
            ),
        )
    ]
    if row.explanation is not None:
        queries.append(
            (
                f"UPDATE features SET llm_label = ?, {', '.join(f'{c} = ?' for c in SCORES)}"
                " WHERE training_id = ? AND idx = ?",
                (row.explanation, *row.scores, row.training_id, row.index),
            )
        )
    return queries


def of_feature(training_id: str, index: int) -> Query:
    """A feature's explanations, latest first."""
    return (
        "SELECT * FROM feature_explanations WHERE training_id = ? AND idx = ? ORDER BY created_at DESC, explainer",
        (training_id, index),
    )


def cached(training_id: str, explainer: str) -> Query:
    """This explainer's rows of the SAE: what a run may keep or build on (one primary-key range)."""
    return (
        "SELECT idx, state, explanation, explainer_examples, detection FROM feature_explanations"
        " WHERE training_id = ? AND explainer = ?",
        (training_id, explainer),
    )


def best_features(training_id: str, top: int) -> Query:
    """The ``top`` features a run explains unless told which: the best scored by their score's lower bound,
    then the most frequent live ones."""
    return (
        "SELECT idx FROM features WHERE training_id = ? AND frequency > 0"
        " ORDER BY score_low IS NULL, score_low DESC, frequency DESC, idx LIMIT ?",
        (training_id, top),
    )


def live_among(training_id: str, indices: Sequence[int]) -> Query:
    """Which of ``indices`` fire at all."""
    return (
        f"SELECT idx FROM features WHERE training_id = ? AND frequency > 0 AND idx IN ({placeholders(indices)})",
        (training_id, *indices),
    )
