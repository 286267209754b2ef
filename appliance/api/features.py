"""Feature discovery: start an extraction for a finished SAE, browse its features, read one
feature's evidence (examples, logit lens, correlations, ablation, a heatmap over any text), label
and favourite it, and the UMAP map. A feature is addressed by its SAE and index:
``/api/training/tr_x/features/42``.

Routing, validation and the envelope only; the rules are in ``appliance.services.features``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from litestar import Controller, Response, get, patch, post
from litestar.params import Parameter

from appliance.api.apidoc import errors
from appliance.api.envelope import Envelope, ok, page
from appliance.api.queueing import AcceptedResponse, accepted
from appliance.contracts.special_tokens import GivenIds
from appliance.data.database import AsyncDatabase
from appliance.data.features import Browse
from appliance.data.layout import DataLayout
from appliance.jobs.async_store import AsyncJobStore
from appliance.services import explanations
from appliance.services import features as service
from appliance.services.explanations import FeatureExplanation
from appliance.services.features import (
    Correlation,
    CorrelationMatrix,
    Extraction,
    FeatureDetail,
    FeatureLens,
    FeatureRow,
    MapPoint,
)

Index = Annotated[int, msgspec.Meta(ge=0)]


class ExtractRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    training_id: str
    eval_samples: Annotated[int, msgspec.Meta(ge=8, le=1_000_000)] = 2000
    top_k_examples: Annotated[int, msgspec.Meta(ge=1, le=200)] = 20
    context_length: Annotated[int, msgspec.Meta(ge=2, le=32768)] = 128
    dataset_id: str | None = None  # default: the training's own dataset (imported SAEs need one)
    # Special tokens' positions (BOS/EOS/PAD...) count in no statistic and are never an example: the
    # tokenizer's, or exactly ``special_token_ids`` when given.
    exclude_special_tokens: bool = True
    special_token_ids: GivenIds | None = None


class FeatureUpdate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    name: Annotated[str, msgspec.Meta(max_length=200)] | None = None
    description: Annotated[str, msgspec.Meta(max_length=5000)] | None = None
    is_favorite: bool | None = None


class ExplainRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    features: Annotated[list[Index], msgspec.Meta(min_length=1, max_length=10_000)] | None = None
    # Without a list: the best scored features (by their score's lower bound), then the most frequent live ones.
    top: Annotated[int, msgspec.Meta(ge=1, le=50_000)] = 50
    score: bool = True  # judge each explanation by detection and fuzzing
    max_calls: Annotated[int, msgspec.Meta(ge=1, le=1_000_000)] | None = None  # default: the settings' max_calls
    redo: bool = False  # explain again what this explainer did before (else a run resumes: the cache is kept)


class TextRequest(msgspec.Struct, forbid_unknown_fields=True):
    text: Annotated[str, msgspec.Meta(min_length=1, max_length=20_000)]


FEATURES = "/api/training/{training_id:str}/features"
FEATURE = FEATURES + "/{index:int}"


class FeaturesController(Controller):
    tags = ["features"]

    @post(
        "/api/features/extract",
        responses=errors(404, 409),
        summary="Extract the features of a finished SAE (max-activating examples, statistics, logit lens, labels,"
        " scores, map)",
    )
    async def extract(self, db: AsyncDatabase, jobs: AsyncJobStore, data: ExtractRequest) -> Response[AcceptedResponse]:
        return accepted(
            await service.start_extraction(
                db,
                jobs,
                data.training_id,
                data.dataset_id,
                data.eval_samples,
                data.top_k_examples,
                data.context_length,
                exclude_special_tokens=data.exclude_special_tokens,
                special_token_ids=data.special_token_ids,
            )
        )

    @get(FEATURES + "/summary", summary="The extraction: status, settings, summary")
    async def summary(self, db: AsyncDatabase, training_id: str) -> Envelope[Extraction]:
        return ok(await service.summary(db, training_id))

    @get(FEATURES, responses=errors(409), summary="Browse features: search, sort, filter, pages")
    async def browse(
        self,
        db: AsyncDatabase,
        training_id: str,
        search: str | None = Parameter(default=None, max_length=200),
        # Scores (interpretability, detection, fuzzing) sort by their interval's lower bound, unscored last.
        sort_by: Literal[
            "index", "frequency", "max_activation", "interpretability", "detection", "fuzzing", "name"
        ] = "frequency",
        order: Literal["asc", "desc"] = "desc",
        page_number: int = Parameter(query="page", default=1, ge=1, le=1_000_000),
        limit: int = Parameter(default=50, ge=1, le=500),
        favorites_only: bool = False,
        include_dead: bool = False,
        min_frequency: float | None = Parameter(default=None, ge=0, le=1),
        max_frequency: float | None = Parameter(default=None, ge=0, le=1),
        # A Matryoshka SAE's prefix group (0: the smallest prefix); other SAEs have none.
        group: int | None = Parameter(default=None, ge=0, le=1024),
    ) -> Envelope[list[FeatureRow]]:
        rows, total = await service.browse(
            db,
            training_id,
            Browse(
                search, sort_by, order, page_number, limit, favorites_only, include_dead, min_frequency, max_frequency
            ),
            group,
        )
        return page(rows, page_number, limit, total)

    @get(FEATURES + "/map", responses=errors(409), summary="The UMAP map: 2-D points of live features")
    async def feature_map(
        self, db: AsyncDatabase, training_id: str, group: int | None = Parameter(default=None, ge=0, le=1024)
    ) -> Envelope[list[MapPoint]]:
        return ok(await service.feature_map(db, training_id, group))

    @get(
        FEATURES + "/correlation-matrix",
        responses=errors(409),
        summary="Pearson correlations among the top-N features by frequency",
    )
    async def correlation_matrix(
        self, db: AsyncDatabase, layout: DataLayout, training_id: str, top: int = Parameter(default=32, ge=2, le=200)
    ) -> Envelope[CorrelationMatrix]:
        return ok(await service.correlation_matrix(db, layout, training_id, top))

    @get(FEATURE, responses=errors(409), summary="One feature with its evidence")
    async def detail(
        self,
        db: AsyncDatabase,
        layout: DataLayout,
        training_id: str,
        index: int,
        examples: int = Parameter(default=20, ge=0, le=200),
        window: int = Parameter(default=12, ge=1, le=256),
    ) -> Envelope[FeatureDetail]:
        return ok(await service.detail(db, layout, training_id, index, examples, window))

    @get(
        FEATURE + "/logit-lens",
        responses=errors(409),
        summary="The tokens the feature's decoder direction promotes and suppresses",
    )
    async def logit_lens(self, db: AsyncDatabase, training_id: str, index: int) -> Envelope[FeatureLens]:
        return ok(await service.logit_lens(db, training_id, index))

    @get(
        FEATURE + "/correlations",
        responses=errors(409),
        summary="The features that co-activate with this one (Pearson over the evaluation tokens)",
    )
    async def correlations(
        self,
        db: AsyncDatabase,
        layout: DataLayout,
        training_id: str,
        index: int,
        top: int = Parameter(default=20, ge=1, le=200),
    ) -> Envelope[list[Correlation]]:
        return ok(await service.correlations(db, layout, training_id, index, top))

    @patch(FEATURE, responses=errors(409), summary="Name, describe or favourite a feature")
    async def update(
        self, db: AsyncDatabase, training_id: str, index: int, data: FeatureUpdate
    ) -> Envelope[FeatureRow]:
        return ok(await service.update(db, training_id, index, data.name, data.description, data.is_favorite))

    @post(
        FEATURE + "/activations-on",
        responses=errors(409, 502, 503),
        status_code=200,
        summary="The feature's activation at each token of a text (runs the model)",
    )
    async def activations_on(
        self, db: AsyncDatabase, jobs: AsyncJobStore, training_id: str, index: int, data: TextRequest
    ) -> Envelope[dict[str, Any]]:
        return ok(await service.activations_on(db, jobs, training_id, index, data.text))

    @post(
        FEATURES + "/explain",
        responses=errors(409),
        status_code=202,
        summary="Explain features with a language model and score the explanations by detection and fuzzing"
        " (settings: /api/settings/labeling); the same request again resumes",
    )
    async def explain(
        self, db: AsyncDatabase, jobs: AsyncJobStore, training_id: str, data: ExplainRequest
    ) -> Response[AcceptedResponse]:
        return accepted(
            await explanations.start(
                db,
                jobs,
                training_id,
                data.features,
                data.top,
                score=data.score,
                max_calls=data.max_calls,
                redo=data.redo,
            )
        )

    @get(
        FEATURE + "/explanations",
        responses=errors(409),
        summary="A feature's explanations by language models, their detection and fuzzing scores and what the"
        " judges saw",
    )
    async def explanations(self, db: AsyncDatabase, training_id: str, index: int) -> Envelope[list[FeatureExplanation]]:
        return ok(await explanations.of_feature(db, training_id, index))

    @post(
        FEATURE + "/ablation",
        responses=errors(409, 502, 503),
        status_code=200,
        summary="Zero the feature on its top contexts: perplexity change and impact (runs the model)",
    )
    async def ablation(
        self,
        db: AsyncDatabase,
        jobs: AsyncJobStore,
        layout: DataLayout,
        training_id: str,
        index: int,
        contexts: int = Parameter(default=10, ge=1, le=100),
    ) -> Envelope[dict[str, Any]]:
        return ok(await service.ablation(db, jobs, layout, training_id, index, contexts))
