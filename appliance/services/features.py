"""The rules of feature discovery, behind the thin controller in ``appliance.api.features``: when an
extraction may start and what its job is given, what a browser page, a feature's evidence and its
probes read, and which actions each state allows.

Browsing reads SQLite (``appliance.data.features``: one row per feature, indexed by the sort keys);
per-feature views read the extraction's memory-mapped arrays (``appliance.contracts.feature_arrays``).
Views that need the model run as short jobs on the worker's interactive lane (``run_and_wait``).
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any, Literal

import msgspec

from appliance.contracts.feature_arrays import HIST_EDGES, FeatureArrays, arrays_for
from appliance.contracts.matryoshka import group_bounds, prefix_group
from appliance.contracts.params.features import (
    AblationParams,
    ActivationsOnParams,
    ExtractParams,
    ProbeParams,
    SaeModel,
)
from appliance.contracts.params.models import HookPoint, ModelArchitecture
from appliance.contracts.special_tokens import check_given
from appliance.contracts.token_text import context_text
from appliance.contracts.tokenization import load_tokenizer
from appliance.data import features as sql
from appliance.data import models, trainings
from appliance.data.database import AsyncDatabase, Row
from appliance.data.layout import DataLayout
from appliance.errors import Conflict, NotFound, ValidationError
from appliance.jobs.async_store import AsyncJobStore
from appliance.jobs.records import Job
from appliance.services.common import checked_id, get_or_404, named_row, tokenizer_of
from appliance.services.jobs import run_and_wait


# -- what the API answers --------------------------------------------------------------------------
class ExtractionConfig(msgspec.Struct, kw_only=True):
    """The settings an extraction ran with (what the API needs of them again: the tokenizer)."""

    eval_samples: int | None = None
    top_k_examples: int | None = None
    context_length: int = 128
    dataset_id: str | None = None
    tokenizer: str = "demo"
    # As requested (the ids left out are the summary's); extractions before the setting left none out.
    exclude_special_tokens: bool = False
    special_token_ids: list[int] | None = None


class ExtractionSummary(msgspec.Struct, omit_defaults=True, kw_only=True):
    """The extraction's result: counts, the interpretability summary and the pass's speed."""

    features: int | None = None
    alive: int | None = None
    dead: int | None = None
    # Live features scored (the support floor met) and too rare to score; None in an extraction from before
    # scores had support, whose features show as unscored until it is extracted again.
    scored: int | None = None
    too_rare: int | None = None
    min_active_samples: int | None = None  # the floor: distinct evaluation samples where it fires
    min_held_out_positives: int | None = None  # and held-out positions above 10% of its max
    score_interval: str | None = None  # how the interval is made, e.g. "95% percentile bootstrap over ..."
    interpretable_share: float | None = None  # of the scored features, those scoring >= 0.5
    mean_score: float | None = None  # over the scored features
    activation_rate: float | None = None
    samples: int | None = None
    tokens: int | None = None
    excluded_token_ids: list[int] | None = None  # special tokens whose positions count nowhere
    excluded_positions: int | None = None  # how many of ``tokens`` those were
    tokens_per_second: float | None = None
    pass_seconds: float | None = None
    seconds: float | None = None


class Extraction(msgspec.Struct):
    training_id: str
    status: str  # none, extracting, ready, error
    job_id: str | None
    config: ExtractionConfig
    summary: ExtractionSummary | None
    map_status: str | None
    error: str | None
    updated_at: float
    actions: list[str]
    # A Matryoshka SAE's nested prefix sizes: group g is latents [widths[g-1], widths[g]) (the browser's
    # and the map's ``group`` filter); None for other architectures.
    matryoshka_widths: list[int] | None = None


class BrowserExample(msgspec.Struct):
    """The strongest context of a feature, as the browser's table shows it. ``joined[i]``: token i's text is
    in token i-1's (a character split over tokens, ``appliance.contracts.token_text``); empty in an
    extraction from before it was recorded."""

    tokens: list[str]
    activations: list[float]
    max_index: int
    joined: list[bool] = msgspec.field(default_factory=list)


ScoreState = Literal["scored", "too_rare", "dead"]


class FeatureScores(msgspec.Struct, kw_only=True):
    """A feature's scores and support, as FeatureRow and FeatureDetail both carry them (``_scores``)."""

    active_samples: int
    score: float | None
    score_low: float | None
    score_high: float | None
    score_state: ScoreState
    held_out_positives: int
    detection: float | None
    detection_low: float | None
    detection_high: float | None
    fuzzing: float | None
    fuzzing_low: float | None
    fuzzing_high: float | None


class FeatureRow(FeatureScores, kw_only=True):
    """One feature as the browser lists it. ``score`` (held-out F1 of its top tokens) and its 95% interval
    ``score_low``..``score_high`` are None unless ``score_state`` is "scored": "too_rare" is under the support
    floor (ExtractionSummary.min_active_samples, min_held_out_positives), "dead" never fires. ``detection``
    and ``fuzzing`` judge ``llm_label``, the latest explanation by a language model (balanced accuracy, with
    their intervals), None until one is scored."""

    index: int
    label: str
    name: str | None
    auto_label: str
    llm_label: str | None
    frequency: float
    max_activation: float
    mean_activation: float
    is_favorite: bool
    example: BrowserExample | None
    actions: list[str]
    # A Matryoshka SAE's prefix group (0: the smallest prefix's latents); None for other architectures.
    group: int | None = None


class Histogram(msgspec.Struct):
    log10_edges: list[float]
    counts: list[int]


class LogitLens(msgspec.Struct, kw_only=True):
    """The tokens the decoder direction promotes and suppresses, with their logits (the logit change one unit of
    the feature adds). ``logsumexp`` of all its logits and the model's ``vocab_size`` give each token's probability
    if the feature alone set the next token, exp(logit - logsumexp), and against an even spread, times vocab_size;
    either is None when unknown (an extraction from before logsumexp was stored)."""

    positive: list[tuple[str, float]] = msgspec.field(default_factory=list)
    negative: list[tuple[str, float]] = msgspec.field(default_factory=list)
    logsumexp: float | None = None
    vocab_size: int | None = None


class FeatureLens(LogitLens, kw_only=True):
    index: int


class FeatureDetail(FeatureScores, kw_only=True):
    """One feature with its evidence; its scores as in FeatureRow."""

    index: int
    label: str
    name: str | None
    auto_label: str
    llm_label: str | None
    description: str | None
    is_favorite: bool
    frequency: float
    max_activation: float
    mean_activation: float
    histogram: Histogram
    top_tokens: list[tuple[str, int]]
    logit_lens: LogitLens
    examples: list[dict[str, Any]]  # FeatureArrays.examples
    quantile_examples: list[dict[str, Any]]  # FeatureArrays.quantile_examples
    ablation: dict[str, Any] | None  # the last features.ablation result
    map: list[float] | None
    actions: list[str]
    group: int | None = None  # as in FeatureRow


class MapPoint(msgspec.Struct):
    index: int
    x: float
    y: float
    frequency: float
    label: str
    score: float | None  # the point estimate; None when not scored
    group: int | None = None  # as in FeatureRow


class CorrelationMatrix(msgspec.Struct):
    features: list[int]
    matrix: list[list[float]]


class Correlation(msgspec.Struct):
    index: int
    label: str
    correlation: float


# -- allowed actions --------------------------------------------------------------------------------
def extraction_actions(status: str) -> list[str]:
    """What the API allows now for an SAE's features, by the extraction's status ("none": never
    extracted). An extraction in progress is cancelled through its job; a finished one (ready or
    failed) may run again, and only ready features can be explained (by a language model) or steered."""
    if status == "extracting":
        return ["cancel"]
    if status == "ready":
        return ["extract", "explain", "steer"]
    return ["extract"]


def feature_actions(frequency: float) -> list[str]:
    """What the API allows for one feature: a dead one (it never fired on the evaluation text) has no
    contexts to ablate and is not explained, but can still be named, probed on a text and steered."""
    if frequency > 0:
        return ["update", "activations_on", "ablation", "explain", "steer"]
    return ["update", "activations_on", "steer"]


# -- reading ----------------------------------------------------------------------------------------
def architecture(model: Row) -> ModelArchitecture:
    """The model's architecture, as the worker stored it when the model loaded."""
    return msgspec.json.decode(model["architecture"], type=ModelArchitecture)


def hook_point(arch: ModelArchitecture, training: Row) -> HookPoint:
    """The model's hook point the training's SAE reads."""
    return next(p for p in arch.hook_points if p.layer == training["layer"] and p.type == training["hook_type"])


def _config(row: Row) -> ExtractionConfig:
    return msgspec.json.decode(row["config"], type=ExtractionConfig)


async def _extraction(db: AsyncDatabase, training_id: str) -> Row:
    row = await db.one(sql.get_extraction(checked_id(training_id, "tr", "training_id")))
    if row is None:
        raise NotFound(
            f"Training {training_id} has no feature extraction yet: POST /api/features/extract",
            details={"training_id": training_id},
        )
    return row


async def ready(db: AsyncDatabase, training_id: str) -> Row:
    """The extraction row, once its features are ready (404 without one, 409 while not ready)."""
    extraction = await _extraction(db, training_id)
    if extraction["status"] != "ready":
        raise Conflict(
            f"The features of {training_id} are {extraction['status']}", details={"status": extraction["status"]}
        )
    return extraction


async def _feature(db: AsyncDatabase, training_id: str, index: int) -> Row:
    """One ready feature's row with its evidence (404 for an index the SAE does not have)."""
    await ready(db, training_id)
    row = await db.one(sql.get_feature(training_id, index))
    if row is None:
        raise NotFound(f"{training_id} has no feature {index}", details={"index": index})
    return row


def _label(row: Row) -> str:
    return str(row["name"] or row["llm_label"] or row["auto_label"])


def score_state(row: Row) -> ScoreState:
    """Why a feature has a score or not: an extraction writes a score only with the support floor met (one
    from before the floor existed shows as unscored until extracted again: 0014_feature_scores.sql)."""
    if row["frequency"] <= 0:
        return "dead"
    return "scored" if row["score"] is not None else "too_rare"


def _scores(row: Row) -> dict[str, Any]:
    """The score, the judges' scores, their intervals and the support, as both FeatureRow and FeatureDetail
    carry them."""
    return {
        "active_samples": row["active_samples"],
        "score_state": score_state(row),
        "held_out_positives": row["held_out_positives"],
        **{
            f"{name}{end}": row[f"{name}{end}"]
            for name in ("score", "detection", "fuzzing")
            for end in ("", "_low", "_high")
        },
    }


def matryoshka_widths(training: Row) -> list[int] | None:
    """A Matryoshka SAE's nested prefix sizes, as its training recorded them; None for other SAEs."""
    if training["encoder_type"] != "matryoshka_batchtopk":
        return None
    widths = (msgspec.json.decode(training["config"]).get("hyperparameters") or {}).get("matryoshka_widths")
    return list(widths) if widths else None


async def _widths(db: AsyncDatabase, training_id: str) -> list[int] | None:
    training = await db.one(trainings.get(training_id))
    return None if training is None else matryoshka_widths(training)


def group_of(widths: list[int] | None, index: int) -> int | None:
    return None if widths is None or index >= widths[-1] else prefix_group(widths, index)


def group_range(widths: list[int] | None, group: int | None) -> tuple[int, int] | None:
    """The latents of prefix ``group`` (None: no filter), or VALIDATION_ERROR for an SAE without that group."""
    if group is None:
        return None
    if widths is None:
        raise ValidationError(
            "Only a Matryoshka SAE's features have prefix groups", details={"field": "group", "group": group}
        )
    if group >= len(widths):
        raise ValidationError(
            f"The SAE has prefix groups 0-{len(widths) - 1}", details={"field": "group", "group": group}
        )
    return group_bounds(widths, group)


def _row(row: Row, example: str | None, widths: list[int] | None = None) -> FeatureRow:
    return FeatureRow(
        index=row["idx"],
        label=_label(row),
        name=row["name"],
        auto_label=row["auto_label"],
        llm_label=row["llm_label"],
        frequency=row["frequency"],
        max_activation=row["max_activation"],
        mean_activation=row["mean_activation"],
        **_scores(row),
        is_favorite=bool(row["is_favorite"]),
        example=msgspec.json.decode(example, type=BrowserExample) if example else None,
        actions=feature_actions(row["frequency"]),
        group=group_of(widths, row["idx"]),
    )


def _shown(layout: DataLayout, tokenizer_id: str, example: dict[str, Any]) -> None:
    """A context's tokens as text (``tokens``) and which of them join the previous one's text (``joined``)."""
    shown = context_text(load_tokenizer(tokenizer_id, layout.root), example["token_ids"])
    example["tokens"], example["joined"] = shown.texts, shown.joined


async def summary(db: AsyncDatabase, training_id: str) -> Extraction:
    """The extraction's state; "none" (a state, not an error) for an SAE never extracted."""
    training = await get_or_404(
        db, trainings.get(checked_id(training_id, "tr", "training_id")), "training", training_id, "training_id"
    )
    row = await db.one(sql.get_extraction(training_id))
    if row is None:
        return Extraction(
            training["id"],
            "none",
            None,
            ExtractionConfig(),
            None,
            None,
            None,
            training["updated_at"],
            extraction_actions("none"),
            matryoshka_widths(training),
        )
    return Extraction(
        row["training_id"],
        row["status"],
        row["job_id"],
        _config(row),
        msgspec.json.decode(row["summary"], type=ExtractionSummary) if row["summary"] else None,
        row["map_status"],
        row["error_message"],
        row["updated_at"],
        extraction_actions(row["status"]),
        matryoshka_widths(training),
    )


async def browse(
    db: AsyncDatabase, training_id: str, query: sql.Browse, group: int | None = None
) -> tuple[list[FeatureRow], int]:
    """One page of features and the total that match; ``group``: a Matryoshka SAE's prefix group only."""
    await ready(db, training_id)
    widths = await _widths(db, training_id)
    query = replace(query, index_range=group_range(widths, group))
    plan = sql.browse_plan(training_id, query)
    page = await db.all(plan.rows)
    if plan.filtered:
        total = page[0]["total"] if page else await db.scalar(plan.count)
    else:
        total = await db.scalar(plan.count)
    wanted = [r["idx"] for r in page]
    by_index = {r["idx"]: r for r in await db.all(sql.rows_by_index(training_id, wanted))} if wanted else {}
    rows = [by_index[i] for i in wanted]
    examples: dict[int, str] = {}
    if rows:
        stored = await db.all(sql.examples_of(training_id, [r["idx"] for r in rows]))
        examples = {r["idx"]: r["example"] for r in stored}
    return [_row(r, examples.get(r["idx"]), widths) for r in rows], total


async def feature_map(db: AsyncDatabase, training_id: str, group: int | None = None) -> list[MapPoint]:
    await ready(db, training_id)
    widths = await _widths(db, training_id)
    return [
        MapPoint(r["idx"], r["map_x"], r["map_y"], r["frequency"], r["label"], r["score"], group_of(widths, r["idx"]))
        for r in await db.all(sql.map_points(training_id, group_range(widths, group)))
    ]


async def correlation_matrix(db: AsyncDatabase, layout: DataLayout, training_id: str, top: int) -> CorrelationMatrix:
    """Pearson correlations among the ``top`` most frequent features."""
    await ready(db, training_id)
    chosen = [r["idx"] for r in await db.all(sql.most_frequent(training_id, top))]
    arrays = arrays_for(layout.features(training_id))
    matrix = []
    for i in chosen:
        found = dict(arrays.correlations(i, top=arrays.d_sae))
        matrix.append([1.0 if i == j else found.get(j, 0.0) for j in chosen])
    return CorrelationMatrix(chosen, matrix)


async def detail(
    db: AsyncDatabase, layout: DataLayout, training_id: str, index: int, examples: int, window: int
) -> FeatureDetail:
    row = await _feature(db, training_id, index)
    tokenizer = _config(await _extraction(db, training_id)).tokenizer
    arrays = arrays_for(layout.features(training_id))
    found = arrays.examples(index, examples, window)
    spread = arrays.quantile_examples(index, window=min(window, 8))
    for example in (*found, *spread):
        _shown(layout, tokenizer, example)
    return FeatureDetail(
        index=row["idx"],
        label=_label(row),
        name=row["name"],
        auto_label=row["auto_label"],
        llm_label=row["llm_label"],
        description=row["description"],
        is_favorite=bool(row["is_favorite"]),
        frequency=row["frequency"],
        max_activation=row["max_activation"],
        mean_activation=row["mean_activation"],
        **_scores(row),
        histogram=Histogram(HIST_EDGES, msgspec.json.decode(row["histogram"])),
        top_tokens=msgspec.json.decode(row["top_tokens"]),
        logit_lens=await _lens(db, training_id, row),
        examples=found,
        quantile_examples=spread,
        ablation=msgspec.json.decode(row["ablation"]) if row["ablation"] else None,
        map=[row["map_x"], row["map_y"]] if row["map_x"] is not None else None,
        actions=feature_actions(row["frequency"]),
        group=group_of(await _widths(db, training_id), row["idx"]),
    )


async def logit_lens(db: AsyncDatabase, training_id: str, index: int) -> FeatureLens:
    lens = await _lens(db, training_id, await _feature(db, training_id, index))
    return FeatureLens(index=index, **msgspec.structs.asdict(lens))


async def _lens(db: AsyncDatabase, training_id: str, row: Row) -> LogitLens:
    """A feature's stored logit lens with its model's vocabulary size (what its softmax ran over), which
    the stored lens does not hold: the model's architecture says it, for old extractions too."""
    lens = msgspec.json.decode(row["logit_lens"], type=LogitLens)
    training = await db.one(trainings.get(training_id))
    model = await db.one(models.get(training["model_id"])) if training is not None else None
    if model is not None and model["architecture"]:
        lens.vocab_size = architecture(model).vocab_size
    return lens


async def correlations(
    db: AsyncDatabase, layout: DataLayout, training_id: str, index: int, top: int
) -> list[Correlation]:
    """The features that co-activate with this one, strongest first, with their labels."""
    await _feature(db, training_id, index)
    pairs = arrays_for(layout.features(training_id)).correlations(index, top)
    labels: dict[int, str] = {}
    if pairs:
        labels = {r["idx"]: r["label"] for r in await db.all(sql.labels_of(training_id, [j for j, _ in pairs]))}
    return [Correlation(j, labels.get(j, ""), c) for j, c in pairs]


# -- changing ---------------------------------------------------------------------------------------
async def update(
    db: AsyncDatabase, training_id: str, index: int, name: str | None, description: str | None, is_favorite: bool | None
) -> FeatureRow:
    """The user's name, description or favourite flag (a blank name clears it)."""
    await _feature(db, training_id, index)
    fields: dict[str, Any] = {
        k: v for k, v in (("name", name), ("description", description), ("is_favorite", is_favorite)) if v is not None
    }
    if "name" in fields:
        fields["name"] = fields["name"].strip() or None
    if not fields:
        raise ValidationError("Nothing to change: give name, description or is_favorite", details={"field": "body"})
    await db.write(sql.update_feature(training_id, index, fields))
    row = await _feature(db, training_id, index)
    return _row(row, row["example"], await _widths(db, training_id))


async def start_extraction(
    db: AsyncDatabase,
    jobs: AsyncJobStore,
    training_id: str,
    dataset_id: str | None,
    eval_samples: int,
    top_k_examples: int,
    context_length: int,
    *,
    exclude_special_tokens: bool = True,
    special_token_ids: list[int] | None = None,
) -> Job:
    """The extraction of a finished SAE's features; its row is (re)claimed in the job's transaction,
    so there is never an extraction marked running without its job, nor the other way round."""
    training = await named_row(db, "training", training_id)
    if training["status"] not in ("completed", "stopped"):
        raise Conflict(
            f"Training {training['id']} is {training['status']}: features come from a finished SAE",
            details={"status": training["status"]},
        )
    model = await _model(db, training)
    if model["status"] != "ready":
        raise Conflict(f"Model {model['id']} is {model['status']}, not ready", details={"status": model["status"]})
    dataset_id = dataset_id or training["dataset_id"]
    if not dataset_id:
        raise ValidationError("Name a dataset_id: this SAE was imported", details={"field": "dataset_id"})
    dataset = await named_row(db, "dataset", dataset_id)
    if dataset["status"] != "ready":
        raise Conflict(f"Dataset {dataset['id']} is {dataset['status']}, not ready")
    existing = await db.one(sql.get_extraction(training["id"]))
    if existing is not None and existing["status"] == "extracting":
        raise Conflict(f"The features of {training['id']} are being extracted already")
    arch = architecture(model)
    check_given(special_token_ids, arch.vocab_size)
    tokenizer = tokenizer_of(model)
    config = msgspec.json.encode(
        ExtractionConfig(
            eval_samples=eval_samples,
            top_k_examples=top_k_examples,
            context_length=context_length,
            dataset_id=dataset["id"],
            tokenizer=tokenizer,
            exclude_special_tokens=exclude_special_tokens,
            special_token_ids=special_token_ids,
        )
    ).decode()
    params = ExtractParams(
        training_id=training["id"],
        model_path=model["path"],
        precision=model["precision"],
        tokenizer=tokenizer,
        dataset_id=dataset["id"],
        hook_point=hook_point(arch, training),
        eval_samples=eval_samples,
        top_k_examples=top_k_examples,
        context_length=context_length,
        parameters=arch.parameters,
        exclude_special_tokens=exclude_special_tokens,
        special_token_ids=special_token_ids,
    )
    now = time.time()

    async def claim(conn: Any, job_id: str) -> None:  # commits with the job, or neither does
        await conn.execute(*sql.claim_extraction(training["id"], config, job_id, now))

    return await jobs.create("features.extract", params, target=("training", training["id"]), within=claim)


async def _model(db: AsyncDatabase, training: Row) -> Row:
    return await get_or_404(db, models.get(training["model_id"]), "model", training["model_id"], "model_id")


async def _sae_model(db: AsyncDatabase, training_id: str, extraction: Row) -> SaeModel:
    """What the worker needs to run the model with this SAE."""
    training = await get_or_404(db, trainings.get(training_id), "training", training_id, "training_id")
    model = await _model(db, training)
    arch = architecture(model)
    config = _config(extraction)
    return SaeModel(
        training_id=training_id,
        model_path=model["path"],
        precision=model["precision"],
        tokenizer=config.tokenizer,
        hook_point=hook_point(arch, training),
        parameters=arch.parameters,
        context_length=config.context_length,
    )


async def _probe(db: AsyncDatabase, training_id: str, feature: int) -> ProbeParams:
    base = await _sae_model(db, training_id, await ready(db, training_id))
    return ProbeParams(**msgspec.structs.asdict(base), feature=feature)


async def activations_on(db: AsyncDatabase, jobs: AsyncJobStore, training_id: str, index: int, text: str) -> Any:
    """The feature's activation at each token of ``text`` (the model runs on the worker)."""
    await _feature(db, training_id, index)
    probe = await _probe(db, training_id, index)
    shown = (await summary(db, training_id)).summary
    excluded = (shown.excluded_token_ids if shown else None) or []
    return await run_and_wait(
        jobs,
        "features.activations_on",
        ActivationsOnParams(**msgspec.structs.asdict(probe), text=text, excluded_token_ids=excluded),
    )


async def ablation(
    db: AsyncDatabase, jobs: AsyncJobStore, layout: DataLayout, training_id: str, index: int, contexts: int
) -> Any:
    """The feature zeroed on its ``contexts`` strongest stored contexts (the model runs on the worker)."""
    await _feature(db, training_id, index)
    arrays = arrays_for(layout.features(training_id))
    ids = _top_contexts(arrays, index, contexts)
    probe = await _probe(db, training_id, index)
    return await run_and_wait(jobs, "features.ablation", AblationParams(**msgspec.structs.asdict(probe), contexts=ids))


def _top_contexts(arrays: FeatureArrays, index: int, contexts: int) -> list[list[int]]:
    """The token ids of the feature's strongest samples where it fires."""
    samples = [
        int(s) for s, v in zip(arrays.top_samples[:contexts, index], arrays.top_values[:contexts, index]) if v > 0
    ]
    return [arrays.tokens[int(arrays.offsets[s]) : int(arrays.offsets[s + 1])].tolist() for s in samples]
