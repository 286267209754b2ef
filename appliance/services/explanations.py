"""The rules of explanations by a language model, behind ``appliance.api.features``: which features a run
explains and with which provider (the ``features.explain`` job: appliance.pipeline.features.explain), and
what a feature's explanations read.

A run needs a provider (PUT /api/settings/labeling) and ready features; it explains the named live features,
else the ``top`` best scored by their score's lower bound, then the most frequent live ones. Posting the same
request again resumes: the job skips what it has (its cache, per feature and explainer) unless ``redo``.
"""

from __future__ import annotations

from typing import Any

import msgspec

from appliance.contracts.labeling import SETTINGS_KEY, decode_settings, explainer_key
from appliance.contracts.params.features import ExplainParams, LocalModel
from appliance.data import app_state, models, trainings
from appliance.data import explanations as sql
from appliance.data import features as feature_sql
from appliance.data.database import AsyncDatabase, Row
from appliance.errors import Conflict, NotFound, ValidationError
from appliance.jobs.async_store import AsyncJobStore
from appliance.jobs.records import Job
from appliance.services.common import get_or_404, named_row, tokenizer_of
from appliance.services.features import ExtractionConfig, ExtractionSummary, architecture, ready


class JudgeExample(msgspec.Struct):
    """A context the judge saw: its tokens, the ones highlighted (fuzzing), the truth and the judge's answer
    (None: its reply could not be read), and the held-out evaluation sample it comes from."""

    tokens: list[str]
    highlighted: list[int]
    truth: bool
    answer: bool | None
    sample: int


class JudgeScore(msgspec.Struct):
    """Balanced accuracy of the judge's answers with its 95% interval; ``correct`` of ``total`` contexts
    (``answered`` were read)."""

    balanced_accuracy: float | None
    low: float | None
    high: float | None
    correct: int
    total: int
    answered: int
    examples: list[JudgeExample]


class ExplainerExcerpt(msgspec.Struct):
    """An excerpt the explainer saw, its ``marked`` tokens as it saw them «marked»."""

    tokens: list[str]
    marked: list[int]
    activation: float
    kind: str  # "top" (its strongest samples) or "range" (across its activations)
    sample: int  # the evaluation sample it comes from (never a held-out one)


class FeatureExplanation(msgspec.Struct):
    """One explainer's explanation of a feature and how its judges scored it. ``state``: "scored",
    "explained" (not scored: see ``message``), "malformed" (the reply could not be read), or how the
    endpoint failed ("timeout", "unauthorized", "unreachable", "upstream_error": a later run tries again)."""

    explainer: str
    provider: str
    model: str
    state: str
    message: str | None
    explanation: str | None
    method: str | None
    detection: JudgeScore | None
    fuzzing: JudgeScore | None
    explainer_examples: list[ExplainerExcerpt]
    calls: int
    created_at: float


async def start(
    db: AsyncDatabase,
    jobs: AsyncJobStore,
    training_id: str,
    features: list[int] | None,
    top: int,
    *,
    score: bool,
    max_calls: int | None,
    redo: bool,
) -> Job:
    """A ``features.explain`` run over the named live features (else the ``top`` best)."""
    extraction = await ready(db, training_id)
    settings = decode_settings(await db.scalar(app_state.get(SETTINGS_KEY)))
    if settings.provider == "none":
        raise Conflict(
            "No language model to explain features: choose a provider with PUT /api/settings/labeling",
            details={"field": "provider"},
        )
    if features:
        live = {r["idx"] for r in await db.all(sql.live_among(training_id, features))}
        chosen = [i for i in dict.fromkeys(features) if i in live]
    else:
        chosen = [r["idx"] for r in await db.all(sql.best_features(training_id, top))]
    if not chosen:
        raise ValidationError("None of those features fires", details={"field": "features"})
    config = msgspec.json.decode(extraction["config"], type=ExtractionConfig)
    shown = msgspec.json.decode(extraction["summary"], type=ExtractionSummary) if extraction["summary"] else None
    local = await _local_model(db, training_id, settings.local_model_id) if settings.provider == "local" else None
    params = ExplainParams(
        training_id=training_id,
        features=chosen,
        explainer=explainer_key(settings, local.model_id if local else ""),
        settings=settings,
        tokenizer=config.tokenizer,
        excluded_token_ids=(shown.excluded_token_ids if shown else None) or [],
        score=score,
        max_calls=max_calls or settings.max_calls,
        redo=redo,
        local=local,
    )
    return await jobs.create("features.explain", params, target=("training", training_id))


async def _local_model(db: AsyncDatabase, training_id: str, model_id: str | None) -> LocalModel:
    """The registered model the local provider runs: the settings' one, else the SAE's own."""
    if model_id is not None:
        model = await named_row(db, "model", model_id)
    else:
        training = await get_or_404(db, trainings.get(training_id), "training", training_id, "training_id")
        model = await get_or_404(db, models.get(training["model_id"]), "model", training["model_id"], "model_id")
    if model["status"] != "ready":
        raise Conflict(f"Model {model['id']} is {model['status']}, not ready", details={"status": model["status"]})
    return LocalModel(
        model_id=model["id"],
        model_path=model["path"],
        precision=model["precision"],
        tokenizer=tokenizer_of(model),
        parameters=architecture(model).parameters,
    )


async def of_feature(db: AsyncDatabase, training_id: str, index: int) -> list[FeatureExplanation]:
    """A feature's explanations, latest first, with what their judges saw."""
    await ready(db, training_id)
    if await db.one(feature_sql.get_feature(training_id, index)) is None:
        raise NotFound(f"{training_id} has no feature {index}", details={"index": index})
    return [_explanation(row) for row in await db.all(sql.of_feature(training_id, index))]


def _explanation(row: Row) -> FeatureExplanation:
    provider, _, model = str(row["explainer"]).partition(":")
    judged: dict[str, Any] = msgspec.json.decode(row["judged"]) if row["judged"] else {}
    return FeatureExplanation(
        explainer=row["explainer"],
        provider=provider,
        model=model,
        state=row["state"],
        message=row["message"],
        explanation=row["explanation"],
        method=row["method"],
        detection=msgspec.convert(judged["detection"], JudgeScore) if "detection" in judged else None,
        fuzzing=msgspec.convert(judged["fuzzing"], JudgeScore) if "fuzzing" in judged else None,
        explainer_examples=msgspec.json.decode(row["explainer_examples"], type=list[ExplainerExcerpt])
        if row["explainer_examples"]
        else [],
        calls=row["calls"],
        created_at=row["created_at"],
    )
