"""Feature discovery: start an extraction for a finished SAE, browse its features, read one
feature's evidence (examples, logit lens, correlations, ablation, a heatmap over any text), label
and favourite it, and the UMAP map. A feature is addressed by its SAE and index:
``/api/training/tr_x/features/42``.

Browsing reads SQLite (one row per feature, indexed by the sort keys); per-feature views read the
extraction's memory-mapped arrays (``appliance.contracts.feature_arrays``). Views that need the model run as
short jobs on the worker's interactive lane.
"""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal

import msgspec
from litestar import Controller, Request, Response, get, patch, post
from litestar.params import Parameter

from appliance.api.apidoc import errors
from appliance.api.envelope import Meta, meta, page_meta
from appliance.api.queueing import AcceptedResponse, accepted, run_and_wait
from appliance.api.state import ApiState, api_state
from appliance.api.validation import check_id, fetch_one
from appliance.contracts.feature_arrays import HIST_EDGES, arrays_for
from appliance.contracts.tokenization import load_tokenizer
from appliance.errors import Conflict, NotFound, ValidationError

SORTS = {"index": "idx", "frequency": "frequency", "max_activation": "max_activation",
         "interpretability": "score", "name": "COALESCE(name, llm_label, auto_label)"}


class ExtractRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    training_id: str
    eval_samples: Annotated[int, msgspec.Meta(ge=8, le=1_000_000)] = 2000
    top_k_examples: Annotated[int, msgspec.Meta(ge=1, le=200)] = 20
    context_length: Annotated[int, msgspec.Meta(ge=2, le=32768)] = 128
    dataset_id: str | None = None  # default: the training's own dataset (imported SAEs need one)


class FeatureUpdate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    name: Annotated[str, msgspec.Meta(max_length=200)] | None = None
    description: Annotated[str, msgspec.Meta(max_length=5000)] | None = None
    is_favorite: bool | None = None


class LabelRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    features: Annotated[list[Annotated[int, msgspec.Meta(ge=0)]], msgspec.Meta(min_length=1, max_length=2000)] | None = None
    top: Annotated[int, msgspec.Meta(ge=1, le=2000)] = 50  # without a list: the most frequent live features


class TextRequest(msgspec.Struct, forbid_unknown_fields=True):
    text: Annotated[str, msgspec.Meta(min_length=1, max_length=20_000)]


class FeatureRow(msgspec.Struct):
    index: int
    label: str
    name: str | None
    auto_label: str
    frequency: float
    max_activation: float
    mean_activation: float
    score: float | None
    is_favorite: bool
    example: dict[str, Any] | None


class FeatureDetail(msgspec.Struct):
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
    active_samples: int
    score: float | None
    histogram: dict[str, Any]
    top_tokens: list[Any]
    logit_lens: dict[str, Any]
    examples: list[dict[str, Any]]
    quantile_examples: list[dict[str, Any]]
    ablation: dict[str, Any] | None
    map: list[float] | None


class Extraction(msgspec.Struct):
    training_id: str
    status: str
    job_id: str | None
    config: dict[str, Any]
    summary: dict[str, Any] | None
    map_status: str | None
    error: str | None
    updated_at: float


class Envelope(msgspec.Struct):
    data: Any
    meta: Meta


def _row(row: Any, example: str | None) -> FeatureRow:
    return FeatureRow(index=row["idx"], label=row["name"] or row["llm_label"] or row["auto_label"], name=row["name"],
                      auto_label=row["auto_label"], frequency=row["frequency"], max_activation=row["max_activation"],
                      mean_activation=row["mean_activation"], score=row["score"], is_favorite=bool(row["is_favorite"]),
                      example=msgspec.json.decode(example) if example else None)


def _texts(tokenizer_id: str, api: ApiState, ids: list[int]) -> list[str]:
    tokenizer = load_tokenizer(tokenizer_id, api.settings.data_dir)
    return [tokenizer.decode([i], skip_special_tokens=False) for i in ids]


def _prompt(examples: list[dict[str, Any]], top_tokens: list[Any], lens: dict[str, Any], tokenizer: str,
            api: ApiState) -> str:
    """The evidence for one feature as the labeller reads it: contexts with the strongest token in
    « », the tokens it fires on most, and what it makes the model predict."""
    lines = ["Contexts where the feature fires:"]
    for number, example in enumerate(examples, 1):
        texts = _texts(tokenizer, api, example["token_ids"])
        texts[example["max_index"]] = f"«{texts[example['max_index']]}»"
        lines.append(f"{number}. {''.join(texts).strip()}")
    if top_tokens:
        lines.append("It fires most on: " + ", ".join(repr(t) for t, _ in top_tokens[:5]))
    if lens.get("positive"):
        lines.append("It makes the model predict: " + ", ".join(repr(t) for t, _ in lens["positive"][:5]))
    return "\n".join(lines)


class FeaturesController(Controller):
    tags = ["features"]

    async def _extraction(self, api: ApiState, training_id: str) -> Any:
        assert api.db is not None
        rows = await api.db.execute_fetchall("SELECT * FROM feature_extractions WHERE training_id = ?",
                                             (check_id(training_id, "tr", "training_id"),))
        if not rows:
            raise NotFound(f"Training {training_id} has no feature extraction yet: POST /api/features/extract",
                           details={"training_id": training_id})
        return rows[0]

    async def _ready(self, api: ApiState, training_id: str) -> Any:
        extraction = await self._extraction(api, training_id)
        if extraction["status"] != "ready":
            raise Conflict(f"The features of {training_id} are {extraction['status']}",
                           details={"status": extraction["status"]})
        return extraction

    async def _feature(self, api: ApiState, training_id: str, index: int) -> Any:
        assert api.db is not None
        await self._ready(api, training_id)
        rows = await api.db.execute_fetchall(
            "SELECT * FROM features JOIN feature_details USING (training_id, idx) WHERE training_id = ? AND idx = ?",
            (training_id, index))
        if not rows:
            raise NotFound(f"{training_id} has no feature {index}", details={"index": index})
        return rows[0]

    async def _probe(self, api: ApiState, training_id: str, feature: int, **extra: Any) -> dict[str, Any]:
        """What the worker needs to run the model with this SAE."""
        extraction = await self._ready(api, training_id)
        assert api.db is not None
        training = await fetch_one(api.db, "trainings", "tr", training_id, "training_id")
        model = await fetch_one(api.db, "models", "m", training["model_id"], "model_id")
        arch = msgspec.json.decode(model["architecture"])
        point = next(p for p in arch["hook_points"] if p["layer"] == training["layer"]
                     and p["type"] == training["hook_type"])
        config = msgspec.json.decode(extraction["config"])
        return {"training_id": training_id, "model_path": model["path"], "precision": model["precision"],
                "tokenizer": config["tokenizer"], "hook_point": point, "feature": feature,
                "parameters": arch["parameters"], "context_length": config["context_length"], **extra}

    # -- extraction -------------------------------------------------------------------------------
    @post("/api/features/extract", responses=errors(404, 409), summary="Extract the features of a finished SAE (max-activating examples, "
                                           "statistics, logit lens, labels, scores, map)")
    async def extract(self, request: Request, data: ExtractRequest) -> Response[AcceptedResponse]:
        api = api_state(request)
        assert api.db is not None
        training = await fetch_one(api.db, "trainings", "tr", data.training_id, "training_id")
        if training["status"] not in ("completed", "stopped"):
            raise Conflict(f"Training {training['id']} is {training['status']}: features come from a finished SAE",
                           details={"status": training["status"]})
        model = await fetch_one(api.db, "models", "m", training["model_id"], "model_id")
        if model["status"] != "ready":
            raise Conflict(f"Model {model['id']} is {model['status']}, not ready", details={"status": model["status"]})
        dataset_id = data.dataset_id or training["dataset_id"]
        if not dataset_id:
            raise ValidationError("Name a dataset_id: this SAE was imported", details={"field": "dataset_id"})
        dataset = await fetch_one(api.db, "datasets", "ds", dataset_id, "dataset_id")
        if dataset["status"] != "ready":
            raise Conflict(f"Dataset {dataset['id']} is {dataset['status']}, not ready")
        existing = await api.db.execute_fetchall(
            "SELECT status FROM feature_extractions WHERE training_id = ?", (training["id"],))
        if existing and existing[0]["status"] == "extracting":
            raise Conflict(f"The features of {training['id']} are being extracted already")
        arch = msgspec.json.decode(model["architecture"])
        point = next(p for p in arch["hook_points"] if p["layer"] == training["layer"]
                     and p["type"] == training["hook_type"])
        tokenizer = "demo" if model["source"] == "demo" else model["id"]
        config = {"eval_samples": data.eval_samples, "top_k_examples": data.top_k_examples,
                  "context_length": data.context_length, "dataset_id": dataset["id"], "tokenizer": tokenizer}
        now = time.time()

        async def claim(db: Any, job_id: str) -> None:  # commits with the job, or neither does
            await db.execute(
                "INSERT INTO feature_extractions (training_id, status, config, job_id, created_at, updated_at)"
                " VALUES (?, 'extracting', ?, ?, ?, ?) ON CONFLICT (training_id) DO UPDATE SET status = 'extracting',"
                " config = excluded.config, job_id = excluded.job_id, error_message = NULL,"
                " updated_at = excluded.updated_at", (training["id"], msgspec.json.encode(config).decode(), job_id,
                                                      now, now))

        assert api.jobs is not None
        job = await api.jobs.create("features.extract", {
            "training_id": training["id"], "model_path": model["path"], "precision": model["precision"],
            "tokenizer": tokenizer, "dataset_id": dataset["id"], "hook_point": point,
            "eval_samples": data.eval_samples, "top_k_examples": data.top_k_examples,
            "context_length": data.context_length, "parameters": arch["parameters"]},
            target=("training", training["id"]), within=claim)
        return accepted(job)

    @get("/api/training/{training_id:str}/features/summary", summary="The extraction: status, settings, summary")
    async def summary(self, request: Request, training_id: str) -> Envelope:
        api = api_state(request)
        assert api.db is not None
        rows = await api.db.execute_fetchall("SELECT * FROM feature_extractions WHERE training_id = ?",
                                             (check_id(training_id, "tr", "training_id"),))
        if not rows:  # not extracted yet: a state, not an error (the training must exist)
            training = await fetch_one(api.db, "trainings", "tr", training_id, "training_id")
            return Envelope(Extraction(training["id"], "none", None, {}, None, None, None, training["updated_at"]),
                            meta())
        row = rows[0]
        return Envelope(Extraction(row["training_id"], row["status"], row["job_id"], msgspec.json.decode(row["config"]),
                                   msgspec.json.decode(row["summary"]) if row["summary"] else None, row["map_status"],
                                   row["error_message"], row["updated_at"]), meta())

    # -- browsing ---------------------------------------------------------------------------------
    @get("/api/training/{training_id:str}/features", responses=errors(409), summary="Browse features: search, sort, filter, pages")
    async def browse(self, request: Request, training_id: str,
                     search: str | None = Parameter(default=None, max_length=200),
                     sort_by: Literal["index", "frequency", "max_activation", "interpretability", "name"] = "frequency",
                     order: Literal["asc", "desc"] = "desc",
                     page: int = Parameter(default=1, ge=1, le=1_000_000),
                     limit: int = Parameter(default=50, ge=1, le=500),
                     favorites_only: bool = False, include_dead: bool = False,
                     min_frequency: float | None = Parameter(default=None, ge=0, le=1),
                     max_frequency: float | None = Parameter(default=None, ge=0, le=1)) -> Envelope:
        api = api_state(request)
        assert api.db is not None
        await self._ready(api, training_id)
        # Two plans. Browsing (no filter): rows come in the order of a (training_id, key, idx) index
        # and the count is a covering-index range. Filtering: one sequential pass over the SAE's rows
        # (WITHOUT ROWID: they are contiguous) that sorts the matches and counts them in the same
        # query; "+column" keeps SQLite from walking an index row by row instead.
        where, args = ["training_id = ?", "+frequency > 0" if not include_dead else "1"], [training_id]
        if search and search.strip():
            term = search.strip().lower()
            if term.lstrip("#").isdigit():
                where.append("(idx = ? OR instr(search_text, ?) > 0)")
                args += [int(term.lstrip("#")), term]
            else:
                where.append("(instr(search_text, ?) > 0 OR (name IS NOT NULL AND instr(lower(name), ?) > 0)"
                             " OR (llm_label IS NOT NULL AND instr(lower(llm_label), ?) > 0))")
                args += [term, term, term]
        if favorites_only:
            where.append("is_favorite = 1")
        if min_frequency is not None:
            where.append("+frequency >= ?")
            args.append(min_frequency)
        if max_frequency is not None:
            where.append("+frequency <= ?")
            args.append(max_frequency)
        clause = " AND ".join(where)
        direction = "ASC" if order == "asc" else "DESC"
        columns = "idx, name, llm_label, auto_label, frequency, max_activation, mean_activation, score, is_favorite"
        if len(where) > 2:
            rows = await api.db.execute_fetchall(
                f"SELECT {columns}, COUNT(*) OVER () AS total FROM features WHERE {clause}"
                f" ORDER BY +{SORTS[sort_by]} {direction}, idx {direction} LIMIT ? OFFSET ?",
                [*args, limit, (page - 1) * limit])
            total = rows[0]["total"] if rows else (await api.db.execute_fetchall(
                f"SELECT COUNT(*) AS n FROM features WHERE {clause}", args))[0]["n"]
        else:
            dead = "" if include_dead else " AND frequency > 0"
            total = (await api.db.execute_fetchall(
                f"SELECT COUNT(*) AS n FROM features WHERE training_id = ?{dead}", (training_id,)))[0]["n"]
            # The page's indexes from the sort index alone (no row reads while skipping), then its rows.
            wanted = [r["idx"] for r in await api.db.execute_fetchall(
                f"SELECT idx FROM features WHERE {clause}"
                f" ORDER BY {SORTS[sort_by]} {direction}, idx {direction} LIMIT ? OFFSET ?",
                [*args, limit, (page - 1) * limit])]
            by_index = {r["idx"]: r for r in await api.db.execute_fetchall(
                f"SELECT {columns} FROM features WHERE training_id = ? AND idx IN ({','.join('?' * len(wanted))})",
                (training_id, *wanted))} if wanted else {}
            rows = [by_index[i] for i in wanted]
        examples = {}
        if rows:
            marks = ",".join("?" * len(rows))
            examples = {r["idx"]: r["example"] for r in await api.db.execute_fetchall(
                f"SELECT idx, example FROM feature_details WHERE training_id = ? AND idx IN ({marks})",
                (training_id, *[r["idx"] for r in rows]))}
        return Envelope([_row(r, examples.get(r["idx"])) for r in rows], page_meta(page, limit, total))

    @get("/api/training/{training_id:str}/features/map", responses=errors(409), summary="The UMAP map: 2-D points of live features")
    async def feature_map(self, request: Request, training_id: str) -> Envelope:
        api = api_state(request)
        assert api.db is not None
        await self._ready(api, training_id)
        rows = await api.db.execute_fetchall(
            "SELECT idx, map_x, map_y, frequency, COALESCE(name, llm_label, auto_label) AS label, score FROM features"
            " WHERE training_id = ? AND map_x IS NOT NULL AND frequency > 0", (training_id,))
        return Envelope([{"index": r["idx"], "x": r["map_x"], "y": r["map_y"], "frequency": r["frequency"],
                          "label": r["label"], "score": r["score"]} for r in rows], meta())

    @get("/api/training/{training_id:str}/features/correlation-matrix", responses=errors(409),
         summary="Pearson correlations among the top-N features by frequency")
    async def correlation_matrix(self, request: Request, training_id: str,
                                 top: int = Parameter(default=32, ge=2, le=200)) -> Envelope:
        api = api_state(request)
        assert api.db is not None
        await self._ready(api, training_id)
        rows = await api.db.execute_fetchall(
            "SELECT idx FROM features WHERE training_id = ? AND frequency > 0 ORDER BY frequency DESC LIMIT ?",
            (training_id, top))
        chosen = [r["idx"] for r in rows]
        arrays = arrays_for(api.settings.data_dir, training_id)
        matrix = []
        for i in chosen:
            found = dict(arrays.correlations(i, top=arrays.d_sae))
            matrix.append([1.0 if i == j else found.get(j, 0.0) for j in chosen])
        return Envelope({"features": chosen, "matrix": matrix}, meta())

    # -- one feature ------------------------------------------------------------------------------
    @get("/api/training/{training_id:str}/features/{index:int}", responses=errors(409), summary="One feature with its evidence")
    async def detail(self, request: Request, training_id: str, index: int,
                     examples: int = Parameter(default=20, ge=0, le=200),
                     window: int = Parameter(default=12, ge=1, le=256)) -> Envelope:
        api = api_state(request)
        row = await self._feature(api, training_id, index)
        extraction = await self._extraction(api, training_id)
        tokenizer = msgspec.json.decode(extraction["config"])["tokenizer"]
        arrays = arrays_for(api.settings.data_dir, training_id)
        found = arrays.examples(index, examples, window)
        spread = arrays.quantile_examples(index, window=min(window, 8))
        for example in (*found, *spread):
            example["tokens"] = _texts(tokenizer, api, example["token_ids"])
        return Envelope(FeatureDetail(
            index=row["idx"], label=row["name"] or row["llm_label"] or row["auto_label"], name=row["name"],
            auto_label=row["auto_label"], llm_label=row["llm_label"],
            description=row["description"], is_favorite=bool(row["is_favorite"]), frequency=row["frequency"],
            max_activation=row["max_activation"], mean_activation=row["mean_activation"],
            active_samples=row["active_samples"], score=row["score"],
            histogram={"log10_edges": HIST_EDGES, "counts": msgspec.json.decode(row["histogram"])},
            top_tokens=msgspec.json.decode(row["top_tokens"]), logit_lens=msgspec.json.decode(row["logit_lens"]),
            examples=found, quantile_examples=spread, ablation=msgspec.json.decode(row["ablation"]) if row["ablation"] else None,
            map=[row["map_x"], row["map_y"]] if row["map_x"] is not None else None), meta())

    @get("/api/training/{training_id:str}/features/{index:int}/logit-lens", responses=errors(409),
         summary="The tokens the feature's decoder direction promotes and suppresses")
    async def logit_lens(self, request: Request, training_id: str, index: int) -> Envelope:
        row = await self._feature(api_state(request), training_id, index)
        return Envelope({"index": index, **msgspec.json.decode(row["logit_lens"])}, meta())

    @get("/api/training/{training_id:str}/features/{index:int}/correlations", responses=errors(409),
         summary="The features that co-activate with this one (Pearson over the evaluation tokens)")
    async def correlations(self, request: Request, training_id: str, index: int,
                           top: int = Parameter(default=20, ge=1, le=200)) -> Envelope:
        api = api_state(request)
        assert api.db is not None
        await self._feature(api, training_id, index)
        pairs = arrays_for(api.settings.data_dir, training_id).correlations(index, top)
        labels = {}
        if pairs:
            marks = ",".join("?" * len(pairs))
            labels = {r["idx"]: r["label"] for r in await api.db.execute_fetchall(
                f"SELECT idx, COALESCE(name, llm_label, auto_label) AS label FROM features"
                f" WHERE training_id = ? AND idx IN ({marks})",
                (training_id, *[j for j, _ in pairs]))}
        return Envelope([{"index": j, "label": labels.get(j, ""), "correlation": c} for j, c in pairs], meta())

    @patch("/api/training/{training_id:str}/features/{index:int}", responses=errors(409), summary="Name, describe or favourite a feature")
    async def update(self, request: Request, training_id: str, index: int, data: FeatureUpdate) -> Envelope:
        api = api_state(request)
        assert api.db is not None
        await self._feature(api, training_id, index)
        fields = {k: v for k, v in msgspec.to_builtins(data).items() if v is not None}
        if "name" in fields:
            fields["name"] = fields["name"].strip() or None
        if not fields:
            raise ValidationError("Nothing to change: give name, description or is_favorite", details={"field": "body"})
        assignments = ", ".join(f"{k} = ?" for k in fields)
        async with api.db_lock:
            await api.db.execute(f"UPDATE features SET {assignments} WHERE training_id = ? AND idx = ?",
                                 (*fields.values(), training_id, index))
        row = await self._feature(api, training_id, index)
        return Envelope(_row(row, row["example"]), meta())

    @post("/api/training/{training_id:str}/features/{index:int}/activations-on", responses=errors(409, 502, 503), status_code=200,
          summary="The feature's activation at each token of a text (runs the model)")
    async def activations_on(self, request: Request, training_id: str, index: int, data: TextRequest) -> Envelope:
        api = api_state(request)
        await self._feature(api, training_id, index)
        result = await run_and_wait(api, "features.activations_on",
                                    await self._probe(api, training_id, index, text=data.text))
        return Envelope(result, meta())

    @post("/api/training/{training_id:str}/features/label", responses=errors(409), status_code=202,
          summary="Label features with a language model (settings: /api/settings/labeling)")
    async def label(self, request: Request, training_id: str, data: LabelRequest) -> Response[AcceptedResponse]:
        from appliance.api.settings import load_labeling

        api = api_state(request)
        assert api.db is not None and api.jobs is not None
        extraction = await self._ready(api, training_id)
        settings = await load_labeling(api)
        if settings.provider == "none":
            raise Conflict("No labelling provider: choose one with PUT /api/settings/labeling",
                           details={"field": "provider"})
        if data.features:
            marks = ",".join("?" * len(data.features))
            rows = await api.db.execute_fetchall(
                f"SELECT idx FROM features WHERE training_id = ? AND frequency > 0 AND idx IN ({marks})",
                (training_id, *data.features))
        else:
            rows = await api.db.execute_fetchall(
                "SELECT idx FROM features WHERE training_id = ? AND frequency > 0 ORDER BY frequency DESC LIMIT ?",
                (training_id, data.top))
        if not rows:
            raise ValidationError("None of those features fires", details={"field": "features"})
        tokenizer = msgspec.json.decode(extraction["config"])["tokenizer"]
        arrays = arrays_for(api.settings.data_dir, training_id)
        prompts = []
        for row in rows:
            lens = await self._feature(api, training_id, row["idx"])
            prompts.append((row["idx"], _prompt(arrays.examples(row["idx"], settings.examples, 10),
                                                 msgspec.json.decode(lens["top_tokens"]),
                                                 msgspec.json.decode(lens["logit_lens"]), tokenizer, api)))
        probe = await self._probe(api, training_id, rows[0]["idx"]) if settings.provider == "local" else {}
        job = await api.jobs.create("features.label", {"training_id": training_id, "prompts": prompts,
                                                       "settings": msgspec.to_builtins(settings), "probe": probe},
                                    target=("training", training_id))
        return accepted(job)

    @post("/api/training/{training_id:str}/features/{index:int}/ablation", responses=errors(409, 502, 503), status_code=200,
          summary="Zero the feature on its top contexts: perplexity change and impact (runs the model)")
    async def ablation(self, request: Request, training_id: str, index: int,
                       contexts: int = Parameter(default=10, ge=1, le=100)) -> Envelope:
        api = api_state(request)
        await self._feature(api, training_id, index)
        arrays = arrays_for(api.settings.data_dir, training_id)
        samples = [int(s) for s, v in zip(arrays.top_samples[:contexts, index], arrays.top_values[:contexts, index])
                   if v > 0]
        ids = [arrays.tokens[int(arrays.offsets[s]):int(arrays.offsets[s + 1])].tolist() for s in samples]
        result = await run_and_wait(api, "features.ablation", await self._probe(api, training_id, index, contexts=ids))
        return Envelope(result, meta())
