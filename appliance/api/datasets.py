"""Datasets: import a local file, list, read, browse and search samples, delete."""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
from litestar import Controller, Request, Response, delete, get, post
from litestar.params import Parameter

from appliance.api import multipart, uploads
from appliance.api.apidoc import errors, form_fields
from appliance.api.envelope import Meta, meta, page_meta
from appliance.api.queueing import AcceptedResponse, accepted, start_job
from appliance.api.seeds import create_demo_dataset
from appliance.api.state import api_state
from appliance.api.validation import check_id, safe_path
from appliance.contracts.dataset_formats import detect_format
from appliance.contracts.tokenization import TokenizeSettings, tokenizer_path
from appliance.errors import Conflict, NotFound, ValidationError
from appliance.ids import new_id
from appliance.timefmt import iso


class Tokenization(msgspec.Struct):
    tokenizer: str
    status: str  # tokenizing | ready | error
    settings: dict[str, Any]
    stats: dict[str, Any] | None
    job_id: str | None
    error: str | None
    updated_at: str


class Dataset(msgspec.Struct):
    id: str
    name: str
    source: str
    repo_id: str | None
    split: str | None
    format: str | None
    text_column: str
    status: str
    error: dict[str, str] | None
    job_id: str | None
    num_samples: int | None
    size_bytes: int | None
    stats: dict[str, Any] | None
    created_at: str
    updated_at: str
    tokenizations: list[Tokenization] = []


class Sample(msgspec.Struct):
    index: int
    split: str
    length: int
    text: str
    metadata: dict[str, Any] | None


class ImportRequest(msgspec.Struct, forbid_unknown_fields=True):
    path: Annotated[str, msgspec.Meta(min_length=1, max_length=1000)]  # relative to <data dir>/imports
    text_column: Annotated[str, msgspec.Meta(min_length=1, max_length=200)] = "text"
    format: Literal["json", "csv", "parquet", "text"] | None = None
    txt_mode: Literal["line", "paragraph"] = "line"
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=200)] | None = None


class UploadFields(msgspec.Struct, forbid_unknown_fields=True):
    text_column: Annotated[str, msgspec.Meta(min_length=1, max_length=200)] = "text"
    format: Literal["json", "csv", "parquet", "text"] | None = None
    txt_mode: Literal["line", "paragraph"] = "line"
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=200)] | None = None


def _upload_fields(fields: dict[str, str]) -> UploadFields:
    try:
        return msgspec.convert({k: v for k, v in fields.items() if v != ""}, UploadFields)
    except msgspec.ValidationError as exc:
        raise ValidationError(f"Invalid form field: {exc}", details={"field": "body"}) from None


_SAFE_NAME = re.compile(r"[^\w.-]")
SEARCH_COUNT_CAP = 1000


class DownloadRequest(msgspec.Struct, forbid_unknown_fields=True):
    repo_id: Annotated[str, msgspec.Meta(pattern=r"^([A-Za-z0-9][\w.-]{0,95}/)?[A-Za-z0-9][\w.-]{0,95}$")]
    config: Annotated[str, msgspec.Meta(min_length=1, max_length=200)] | None = None
    split: Annotated[str, msgspec.Meta(pattern=r"^[\w.\[\]:%+-]{1,100}$")] = "train"
    # Write-only: kept in a 0600 file for the job, never stored with the dataset or returned.
    hf_token: Annotated[str, msgspec.Meta(min_length=1, max_length=500)] | None = None
    max_samples: Annotated[int, msgspec.Meta(ge=1, le=100_000_000)] | None = None
    text_column: Annotated[str, msgspec.Meta(min_length=1, max_length=200)] = "text"


class DatasetResponse(msgspec.Struct):
    data: Dataset
    meta: Meta


class DatasetListResponse(msgspec.Struct):
    data: list[Dataset]
    meta: Meta


class SampleListResponse(msgspec.Struct):
    data: list[Sample]
    meta: Meta



def _tokenization(row: Any) -> Tokenization:
    return Tokenization(row["tokenizer"], row["status"], msgspec.json.decode(row["settings"]),
                        msgspec.json.decode(row["stats"]) if row["stats"] else None, row["job_id"],
                        row["error_message"], iso(row["updated_at"]) or "")


async def _tokenizations(db: Any, dataset_ids: list[str]) -> dict[str, list[Tokenization]]:
    if not dataset_ids:
        return {}
    marks = ",".join("?" * len(dataset_ids))
    rows = await db.execute_fetchall(f"SELECT * FROM dataset_tokenizations WHERE dataset_id IN ({marks})"
                                     " ORDER BY updated_at DESC", dataset_ids)
    found: dict[str, list[Tokenization]] = {}
    for row in rows:
        found.setdefault(row["dataset_id"], []).append(_tokenization(row))
    return found


def _dataset(row: Any, tokenizations: list[Tokenization] | None = None) -> Dataset:
    return Dataset(
        id=row["id"], name=row["name"], source=row["source"], repo_id=row["repo_id"], split=row["split"],
        format=row["format"], text_column=row["text_column"], status=row["status"],
        error={"code": row["error_code"], "message": row["error_message"] or ""} if row["error_code"] else None,
        job_id=row["job_id"], num_samples=row["num_samples"], size_bytes=row["size_bytes"],
        stats=msgspec.json.decode(row["stats"]) if row["stats"] else None,
        created_at=iso(row["created_at"]) or "", updated_at=iso(row["updated_at"]) or "",
        tokenizations=tokenizations or [])


def _fts_query(search: str) -> str:
    """User words -> an FTS5 query of prefix terms, all required (quotes make any input safe)."""
    words = [w.replace('"', '""') for w in search.split() if w.strip()]
    return " ".join(f'"{w}"*' for w in words)


class DatasetsController(Controller):
    path = "/api/datasets"
    tags = ["datasets"]

    async def _row(self, request: Request, dataset_id: str) -> Any:
        db = api_state(request).db
        assert db is not None
        rows = await db.execute_fetchall("SELECT * FROM datasets WHERE id = ?",
                                         (check_id(dataset_id, "ds", "dataset_id"),))
        if not rows:
            raise NotFound(f"No dataset {dataset_id!r}", details={"dataset_id": dataset_id})
        return rows[0]

    async def _start_import(self, request: Request, path: Path, fmt: str, *, dataset_id: str, name: str,
                            source: str, text_column: str, txt_mode: str, remove_source: bool) -> Response[AcceptedResponse]:
        api = api_state(request)
        assert api.db is not None and api.jobs is not None
        now = time.time()
        return await start_job(api, "dataset.import", {
            "dataset_id": dataset_id, "path": str(path), "format": fmt, "text_column": text_column,
            "txt_mode": txt_mode, "remove_source": remove_source}, "datasets", dataset_id, insert=(
            "INSERT INTO datasets (id, name, source, format, text_column, status, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?, 'ingesting', ?, ?)", (dataset_id, name, source, fmt, text_column, now, now)))

    @post("/import", summary="Import a file from <data dir>/imports (jsonl, json, csv, parquet, txt)")
    async def import_file(self, request: Request, data: ImportRequest) -> Response[AcceptedResponse]:
        imports = api_state(request).settings.data_dir / "imports"
        imports.mkdir(parents=True, exist_ok=True)
        path = safe_path(imports, data.path, "path")
        if not path.is_file():
            raise ValidationError(f"No file {data.path!r} in the imports folder ({imports})", details={"field": "path"})
        fmt = detect_format(path, data.format)
        return await self._start_import(request, path, fmt, dataset_id=new_id("ds"), name=data.name or path.stem,
                                        source="local", text_column=data.text_column, txt_mode=data.txt_mode,
                                        remove_source=False)

    @post("/upload", request_max_body_size=None, opt={**multipart.FILE_UPLOAD, **form_fields(UploadFields)},
          summary="Upload a file as multipart/form-data (field `file`; optional text_column, format, txt_mode, name)")
    async def upload(self, request: Request) -> Response[AcceptedResponse]:
        settings = api_state(request).settings
        uploads.check_announced(request, settings)
        dataset_id = new_id("ds")
        folder = uploads.folder(settings, dataset_id)
        try:
            form = await multipart.receive(uploads.body(request), request.headers.get("content-type", ""), "file",
                                           folder / "upload", settings.max_upload_bytes, uploads.space_check(settings))
            if form.path is None or not form.filename:
                raise ValidationError("No file: send it in the form field `file`", details={"field": "file"})
            fields = _upload_fields(form.fields)
            filename = Path(form.filename.replace("\\", "/")).name
            path = folder / (_SAFE_NAME.sub("_", filename)[-120:] or "upload")
            form.path.rename(path)
            if form.size == 0:
                raise ValidationError("The file is empty", details={"field": "file"})
            fmt = detect_format(path, fields.format)
            return await self._start_import(request, path, fmt, dataset_id=dataset_id, name=fields.name or path.stem,
                                            source="upload", text_column=fields.text_column,
                                            txt_mode=fields.txt_mode, remove_source=True)
        except BaseException:  # no job was created (that is all or nothing): the file goes too
            shutil.rmtree(folder, ignore_errors=True)
            raise

    @post("/demo", responses=errors(409), summary="(Re)create the demo dataset from this device's Python standard library (409 while one exists)")
    async def demo(self, request: Request) -> Response[AcceptedResponse]:
        # Checked and created in one transaction: concurrent requests make one dataset, the others get 409.
        job = await create_demo_dataset(api_state(request))
        return accepted(job)

    @post("/download", summary="Download a dataset from the Hugging Face Hub (streamed when max_samples is set)")
    async def download(self, request: Request, data: DownloadRequest) -> Response[AcceptedResponse]:
        api = api_state(request)
        assert api.db is not None and api.jobs is not None
        dataset_id, now = new_id("ds"), time.time()
        return await start_job(api, "dataset.download", {
            "dataset_id": dataset_id, "repo_id": data.repo_id, "config": data.config, "split": data.split,
            "max_samples": data.max_samples, "text_column": data.text_column}, "datasets", dataset_id, insert=(
            "INSERT INTO datasets (id, name, source, repo_id, config, split, text_column, status, created_at,"
            " updated_at) VALUES (?, ?, 'huggingface', ?, ?, ?, ?, 'downloading', ?, ?)",
            (dataset_id, data.repo_id, data.repo_id, data.config, data.split, data.text_column, now, now)),
            secret=data.hf_token)

    @get("/", summary="Datasets, newest first")
    async def list_datasets(self, request: Request) -> DatasetListResponse:
        db = api_state(request).db
        assert db is not None
        rows = await db.execute_fetchall("SELECT * FROM datasets ORDER BY created_at DESC")
        tokenized = await _tokenizations(db, [r["id"] for r in rows])
        return DatasetListResponse([_dataset(r, tokenized.get(r["id"])) for r in rows], meta())

    @get("/{dataset_id:str}", summary="One dataset with its statistics and tokenizations")
    async def get_dataset(self, request: Request, dataset_id: str) -> DatasetResponse:
        row = await self._row(request, dataset_id)
        tokenized = await _tokenizations(api_state(request).db, [row["id"]])
        return DatasetResponse(_dataset(row, tokenized.get(row["id"])), meta())

    @post("/{dataset_id:str}/tokenize", responses=errors(409), summary="Tokenize a ready dataset (settings are kept per tokenizer)")
    async def tokenize(self, request: Request, dataset_id: str, data: TokenizeSettings) -> Response[AcceptedResponse]:
        row = await self._row(request, dataset_id)
        api = api_state(request)
        assert api.db is not None and api.jobs is not None
        if row["status"] != "ready":
            raise Conflict(f"Dataset {row['id']} is {row['status']}, not ready", details={"status": row["status"]})
        data.check()
        tokenizer_path(data.tokenizer, api.settings.data_dir)
        settings = msgspec.to_builtins(data)
        now = time.time()

        async def claim(db: Any, job_id: str) -> None:
            # Checked and claimed in the job's own transaction, so two requests cannot both start a run
            # and a refused job leaves no claim behind.
            busy = await db.execute_fetchall(
                "SELECT job_id FROM dataset_tokenizations WHERE dataset_id = ? AND tokenizer = ?"
                " AND status = 'tokenizing'", (row["id"], data.tokenizer))
            if busy:
                raise Conflict(f"Dataset {row['id']} is already being tokenized with {data.tokenizer}",
                               details={"job_id": busy[0]["job_id"]})
            await db.execute(
                "INSERT INTO dataset_tokenizations (dataset_id, tokenizer, settings, status, job_id, created_at,"
                " updated_at) VALUES (?, ?, ?, 'tokenizing', ?, ?, ?) ON CONFLICT (dataset_id, tokenizer) DO UPDATE"
                " SET status = 'tokenizing', job_id = excluded.job_id, error_message = NULL,"
                " updated_at = excluded.updated_at",
                (row["id"], data.tokenizer, msgspec.json.encode(settings).decode(), job_id, now, now))

        job = await api.jobs.create("dataset.tokenize", {"dataset_id": row["id"], "settings": settings},
                                    target=("dataset", row["id"]), within=claim)
        return accepted(job)

    @get("/{dataset_id:str}/samples", summary="Browse samples: pagination, split filter, full-text search")
    async def samples(self, request: Request, dataset_id: str,
                      page: int = Parameter(default=1, ge=1, le=10_000_000),
                      limit: int = Parameter(default=10, ge=1, le=200),
                      split: str | None = Parameter(default=None, max_length=100),
                      search: str | None = Parameter(default=None, max_length=500)) -> SampleListResponse:
        row = await self._row(request, dataset_id)
        db = api_state(request).db
        assert db is not None
        where, params = ["s.dataset_id = ?"], [row["id"]]
        if split:
            where.append("s.split = ?")
            params.append(split)
        source, order = "dataset_samples s", "s.idx"
        query = _fts_query(search or "")
        if query:
            # CROSS JOIN makes the full-text index drive the join (left to itself SQLite walks the
            # dataset's rows and runs MATCH per row: minutes on 100k samples). FTS5 yields rowids in
            # order, and rowids follow sample order within a dataset, so no sort either.
            source, order = "samples_fts f CROSS JOIN dataset_samples s ON s.rowid = f.rowid", "f.rowid"
            where.insert(0, "samples_fts MATCH ?")
            params.insert(0, query)
        offset = (page - 1) * limit
        if not query and not split:
            # idx runs 0..n-1 within a dataset: seek to the page instead of skipping OFFSET rows.
            where.append("s.idx >= ?")
            params.append(offset)
            offset = 0
        clause = " AND ".join(where)
        rows = await db.execute_fetchall(
            f"SELECT s.idx, s.split, s.length, s.text, s.metadata FROM {source} WHERE {clause}"
            f" ORDER BY {order} LIMIT ? OFFSET ?", (*params, limit + 1, offset))
        has_next, exact = len(rows) > limit, True
        stats = msgspec.json.decode(row["stats"]) if row["stats"] else {}
        if query:
            # Counting every match of a common word costs more than the page itself (40 ms over 100k
            # samples); past the cap the answer is "at least", as search engines say it.
            total = (await db.execute_fetchall(
                f"SELECT count(*) FROM (SELECT 1 FROM {source} WHERE {clause} LIMIT ?)",
                (*params, SEARCH_COUNT_CAP + 1)))[0][0]
            exact = total <= SEARCH_COUNT_CAP
            total = max(min(total, SEARCH_COUNT_CAP), (page - 1) * limit + len(rows[:limit]))
        elif split:
            total = stats.get("splits", {}).get(split, 0)  # counted at ingestion
        else:
            total = row["num_samples"] or 0
        samples = [Sample(r["idx"], r["split"], r["length"], r["text"],
                          msgspec.json.decode(r["metadata"]) if r["metadata"] else None) for r in rows[:limit]]
        return SampleListResponse(samples, page_meta(page, limit, total, exact=exact, has_next=has_next))

    @delete("/{dataset_id:str}", responses=errors(409), status_code=200, summary="Delete a dataset and its files (409 while in use)")
    async def delete_dataset(self, request: Request, dataset_id: str) -> DatasetResponse:
        row = await self._row(request, dataset_id)
        api = api_state(request)
        assert api.db is not None and api.jobs is not None
        active = await api.db.execute_fetchall(
            "SELECT id FROM jobs WHERE target_type = 'dataset' AND target_id = ? AND status IN ('queued', 'running', 'paused')",
            (row["id"],))
        if active:
            raise Conflict(f"Dataset {row['id']} is being processed by job {active[0]['id']}: cancel it first",
                           details={"job_id": active[0]["id"]})
        used = await api.db.execute_fetchall(
            "SELECT id FROM activation_sets WHERE dataset_id = ? UNION ALL SELECT id FROM trainings WHERE dataset_id = ?",
            (row["id"], row["id"]))
        if used:
            raise Conflict(f"Dataset {row['id']} is used by {used[0]['id']} (an activation set or training): "
                           "delete that first", details={"used_by": used[0]["id"]})
        async with api.db_lock:
            await api.db.execute("DELETE FROM datasets WHERE id = ?", (row["id"],))
        shutil.rmtree(api.settings.data_dir / "datasets" / row["id"], ignore_errors=True)
        shutil.rmtree(api.settings.data_dir / "uploads" / row["id"], ignore_errors=True)
        return DatasetResponse(_dataset(row), meta())
