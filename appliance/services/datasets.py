"""The rules of datasets on the API side: what a dataset looks like to clients, which actions its
state allows, and how each way of making one (import, upload, download, demo) and each tokenization
becomes a row and its job in one transaction."""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Annotated, Any

import aiosqlite
import msgspec
from anyio import to_thread

from appliance.api import multipart, uploads
from appliance.api.envelope import Pagination
from appliance.api.validation import safe_path
from appliance.config import Settings
from appliance.contracts.dataset_formats import FileFormat, detect_format
from appliance.contracts.params.datasets import DemoParams, DownloadParams, ImportParams, TokenizeParams, TxtMode
from appliance.contracts.tokenization import TokenizeSettings, tokenizer_path
from appliance.data import datasets, samples, tokenizations
from appliance.data.database import AsyncDatabase, Row
from appliance.data.layout import DataLayout
from appliance.data.secrets import delete_secret, write_secret
from appliance.errors import Conflict, ValidationError
from appliance.ids import new_id
from appliance.jobs.async_store import AsyncJobStore, Within
from appliance.jobs.finalize import remove
from appliance.jobs.records import Job
from appliance.services.common import named_row, refuse_if_used, row_error
from appliance.timefmt import iso

DEMO_DATASET_NAME = "Python stdlib docs (demo)"
# Counting every match of a common word costs more than the page itself (40 ms over 100k samples);
# past this many the answer is "at least", as search engines say it.
SEARCH_COUNT_CAP = 1000
_SAFE_NAME = re.compile(r"[^\w.-]")

Name = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
Column = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]


# -- what clients see ------------------------------------------------------------------------------
class Tokenization(msgspec.Struct):
    tokenizer: str
    status: str  # tokenizing | ready | error
    settings: dict[str, Any]
    stats: dict[str, Any] | None
    job_id: str | None
    error: str | None
    updated_at: str
    actions: list[str] = []


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
    actions: list[str] = []


class Sample(msgspec.Struct):
    index: int
    split: str
    length: int
    text: str
    metadata: dict[str, Any] | None


# -- what clients send -----------------------------------------------------------------------------
class ImportRequest(msgspec.Struct, forbid_unknown_fields=True):
    path: Annotated[str, msgspec.Meta(min_length=1, max_length=1000)]  # relative to <data dir>/imports
    text_column: Column = "text"
    format: FileFormat | None = None
    txt_mode: TxtMode = "line"
    name: Name | None = None


class UploadFields(msgspec.Struct, forbid_unknown_fields=True):
    text_column: Column = "text"
    format: FileFormat | None = None
    txt_mode: TxtMode = "line"
    name: Name | None = None


class DownloadRequest(msgspec.Struct, forbid_unknown_fields=True):
    repo_id: Annotated[str, msgspec.Meta(pattern=r"^([A-Za-z0-9][\w.-]{0,95}/)?[A-Za-z0-9][\w.-]{0,95}$")]
    config: Name | None = None
    split: Annotated[str, msgspec.Meta(pattern=r"^[\w.\[\]:%+-]{1,100}$")] = "train"
    # Write-only: kept in a 0600 file for the job, never stored with the dataset or returned.
    hf_token: Annotated[str, msgspec.Meta(min_length=1, max_length=500)] | None = None
    max_samples: Annotated[int, msgspec.Meta(ge=1, le=100_000_000)] | None = None
    text_column: Column = "text"


# -- allowed actions -------------------------------------------------------------------------------
def dataset_actions(status: str) -> list[str]:
    """What the API accepts for a dataset in ``status``: a ready one is tokenized or deleted, a failed
    one only deleted; while its import or download runs, only that job can be cancelled."""
    if status == "ready":
        return ["tokenize", "delete"]
    if status == "error":
        return ["delete"]
    return ["cancel"]


def tokenization_actions(status: str) -> list[str]:
    """A tokenization running is cancelled through its job; a finished or failed one can be run again."""
    return ["cancel"] if status == "tokenizing" else ["tokenize"]


# -- rows to Structs -------------------------------------------------------------------------------
def _json(value: str | None) -> Any:
    return msgspec.json.decode(value) if value else None


def _tokenization(row: Row) -> Tokenization:
    return Tokenization(
        row["tokenizer"],
        row["status"],
        msgspec.json.decode(row["settings"]),
        _json(row["stats"]),
        row["job_id"],
        row["error_message"],
        iso(row["updated_at"]) or "",
        tokenization_actions(row["status"]),
    )


def _dataset(row: Row, tokenized: list[Tokenization] | None = None) -> Dataset:
    return Dataset(
        id=row["id"],
        name=row["name"],
        source=row["source"],
        repo_id=row["repo_id"],
        split=row["split"],
        format=row["format"],
        text_column=row["text_column"],
        status=row["status"],
        error=row_error(row),
        job_id=row["job_id"],
        num_samples=row["num_samples"],
        size_bytes=row["size_bytes"],
        stats=_json(row["stats"]),
        created_at=iso(row["created_at"]) or "",
        updated_at=iso(row["updated_at"]) or "",
        tokenizations=tokenized or [],
        actions=dataset_actions(row["status"]),
    )


async def _tokenizations(db: AsyncDatabase, dataset_ids: list[str]) -> dict[str, list[Tokenization]]:
    if not dataset_ids:
        return {}
    found: dict[str, list[Tokenization]] = {}
    for row in await db.all(tokenizations.for_datasets(dataset_ids)):
        found.setdefault(row["dataset_id"], []).append(_tokenization(row))
    return found


async def _row(db: AsyncDatabase, dataset_id: str) -> Row:
    return await named_row(db, "dataset", dataset_id)


# -- reading ---------------------------------------------------------------------------------------
async def list_datasets(db: AsyncDatabase) -> list[Dataset]:
    rows = await db.all(datasets.list_all())
    tokenized = await _tokenizations(db, [r["id"] for r in rows])
    return [_dataset(r, tokenized.get(r["id"])) for r in rows]


async def get_dataset(db: AsyncDatabase, dataset_id: str) -> Dataset:
    row = await _row(db, dataset_id)
    tokenized = await _tokenizations(db, [row["id"]])
    return _dataset(row, tokenized.get(row["id"]))


async def sample_page(
    db: AsyncDatabase, dataset_id: str, page: int, limit: int, split: str | None, search: str | None
) -> tuple[list[Sample], Pagination]:
    """One page of samples (optionally of one split, optionally matching words) and its pagination."""
    row = await _row(db, dataset_id)
    match = samples.fts_query(search or "")
    rows = await db.all(samples.page(row["id"], split, match, page, limit))
    has_next, exact = len(rows) > limit, True
    if match:
        total = await db.scalar(samples.count_matches(row["id"], split, match, SEARCH_COUNT_CAP))
        exact = total <= SEARCH_COUNT_CAP
        total = max(min(total, SEARCH_COUNT_CAP), (page - 1) * limit + len(rows[:limit]))
    elif split:
        total = (_json(row["stats"]) or {}).get("splits", {}).get(split, 0)  # counted at ingestion
    else:
        total = row["num_samples"] or 0
    found = [Sample(r["idx"], r["split"], r["length"], r["text"], _json(r["metadata"])) for r in rows[:limit]]
    return found, Pagination(
        page=page, limit=limit, total=total, has_next=has_next, has_prev=page > 1, total_exact=exact
    )


# -- making datasets -------------------------------------------------------------------------------
def _insert(dataset_id: str, **row: Any) -> Within:
    """The dataset's row, naming its job, in the job's own transaction."""

    async def within(conn: aiosqlite.Connection, job_id: str) -> None:
        await conn.execute(*datasets.insert(dataset_id, job_id=job_id, now=time.time(), **row))

    return within


async def _start_import(
    jobs: AsyncJobStore,
    path: Path,
    fmt: FileFormat,
    *,
    dataset_id: str,
    name: str,
    source: str,
    text_column: str,
    txt_mode: TxtMode,
    remove_source: bool,
) -> Job:
    params = ImportParams(
        dataset_id=dataset_id,
        path=str(path),
        format=fmt,
        text_column=text_column,
        txt_mode=txt_mode,
        remove_source=remove_source,
    )
    return await jobs.create(
        "dataset.import",
        params,
        target=("dataset", dataset_id),
        within=_insert(dataset_id, name=name, source=source, format=fmt, text_column=text_column, status="ingesting"),
    )


async def import_file(jobs: AsyncJobStore, layout: DataLayout, data: ImportRequest) -> Job:
    """Import a file the user put in <data dir>/imports (it stays there)."""
    layout.imports.mkdir(parents=True, exist_ok=True)
    path = safe_path(layout.imports, data.path, "path")
    if not path.is_file():
        raise ValidationError(
            f"No file {data.path!r} in the imports folder ({layout.imports})", details={"field": "path"}
        )
    fmt = detect_format(path, data.format)
    return await _start_import(
        jobs,
        path,
        fmt,
        dataset_id=new_id("ds"),
        name=data.name or path.stem,
        source="local",
        text_column=data.text_column,
        txt_mode=data.txt_mode,
        remove_source=False,
    )


def _upload_fields(fields: dict[str, str]) -> UploadFields:
    try:
        return msgspec.convert({k: v for k, v in fields.items() if v != ""}, UploadFields)
    except msgspec.ValidationError as exc:
        raise ValidationError(f"Invalid form field: {exc}", details={"field": "body"}) from None


async def upload(
    jobs: AsyncJobStore, settings: Settings, layout: DataLayout, body: AsyncIterator[bytes], content_type: str
) -> Job:
    """Take an uploaded file as it arrives into <data dir>/uploads/<dataset id>/ and queue its import,
    which removes the file once the Arrow copy replaces it."""
    dataset_id = new_id("ds")
    folder = layout.upload(dataset_id)
    try:
        form = await multipart.receive(
            body, content_type, "file", folder / "upload", settings.max_upload_bytes, uploads.space_check(settings)
        )
        if form.path is None or not form.filename:
            raise ValidationError("No file: send it in the form field `file`", details={"field": "file"})
        fields = _upload_fields(form.fields)
        filename = Path(form.filename.replace("\\", "/")).name
        path = folder / (_SAFE_NAME.sub("_", filename)[-120:] or "upload")
        form.path.rename(path)
        if form.size == 0:
            raise ValidationError("The file is empty", details={"field": "file"})
        fmt = detect_format(path, fields.format)
        return await _start_import(
            jobs,
            path,
            fmt,
            dataset_id=dataset_id,
            name=fields.name or path.stem,
            source="upload",
            text_column=fields.text_column,
            txt_mode=fields.txt_mode,
            remove_source=True,
        )
    except BaseException:  # no job was created (that is all or nothing): the file goes too
        shutil.rmtree(folder, ignore_errors=True)
        raise


async def download(jobs: AsyncJobStore, layout: DataLayout, data: DownloadRequest) -> Job:
    """Queue a download from the Hub. The token is stored for the worker under the dataset's id, and
    removed again if the job is not created."""
    dataset_id = new_id("ds")
    params = DownloadParams(
        dataset_id=dataset_id,
        repo_id=data.repo_id,
        config=data.config,
        split=data.split,
        max_samples=data.max_samples,
        text_column=data.text_column,
    )
    within = _insert(
        dataset_id,
        name=data.repo_id,
        source="huggingface",
        repo_id=data.repo_id,
        config=data.config,
        split=data.split,
        text_column=data.text_column,
        status="downloading",
    )
    try:
        if data.hf_token:
            write_secret(layout.root, dataset_id, data.hf_token)
        return await jobs.create("dataset.download", params, target=("dataset", dataset_id), within=within)
    except BaseException:
        if data.hf_token:
            delete_secret(layout.root, dataset_id)
        raise


async def create_demo(jobs: AsyncJobStore) -> Job:
    """Queue the job that builds the demo dataset from this device's Python standard library. Checked
    and created in one transaction: of concurrent requests one makes it, the others get 409."""
    dataset_id = new_id("ds")
    insert = _insert(
        dataset_id,
        name=DEMO_DATASET_NAME,
        source="demo",
        format="python-docstrings",
        text_column="text",
        status="ingesting",
    )

    async def within(conn: aiosqlite.Connection, job_id: str) -> None:
        existing = list(await conn.execute_fetchall(*datasets.live_demo()))
        if existing:
            raise Conflict(
                f"The demo dataset already exists ({existing[0]['id']}); delete it first to rebuild it",
                details={"dataset_id": existing[0]["id"]},
            )
        await insert(conn, job_id)

    return await jobs.create(
        "dataset.demo", DemoParams(dataset_id=dataset_id), target=("dataset", dataset_id), within=within
    )


async def tokenize(
    db: AsyncDatabase, jobs: AsyncJobStore, layout: DataLayout, dataset_id: str, data: TokenizeSettings
) -> Job:
    """Queue a tokenization of a ready dataset; its settings are kept per tokenizer."""
    row = await _row(db, dataset_id)
    if row["status"] != "ready":
        raise Conflict(f"Dataset {row['id']} is {row['status']}, not ready", details={"status": row["status"]})
    data.check()
    tokenizer_path(data.tokenizer, layout.root)
    settings = msgspec.json.encode(data).decode()

    async def claim(conn: aiosqlite.Connection, job_id: str) -> None:
        # Checked and claimed in the job's own transaction, so two requests cannot both start a run
        # and a refused job leaves no claim behind.
        busy = list(await conn.execute_fetchall(*tokenizations.running(row["id"], data.tokenizer)))
        if busy:
            raise Conflict(
                f"Dataset {row['id']} is already being tokenized with {data.tokenizer}",
                details={"job_id": busy[0]["job_id"]},
            )
        await conn.execute(*tokenizations.claim(row["id"], data.tokenizer, settings, job_id, time.time()))

    return await jobs.create(
        "dataset.tokenize",
        TokenizeParams(dataset_id=row["id"], settings=data),
        target=("dataset", row["id"]),
        within=claim,
    )


# -- deleting --------------------------------------------------------------------------------------
def refuse_if_processed(what: str, active: Sequence[Row]) -> None:
    """A dataset a job still reads or writes is not deleted under it: the job is cancelled first."""
    if active:
        raise Conflict(
            f"{what} is being processed by a running job ({active[0]['kind']} {active[0]['id']}): cancel it first.",
            details={"job_id": active[0]["id"]},
        )


async def delete_dataset(db: AsyncDatabase, layout: DataLayout, dataset_id: str) -> Dataset:
    """Delete the row (its samples and tokenizations go with it) and then its files."""
    row = await _row(db, dataset_id)
    refuse_if_processed(f'Dataset "{row["name"]}"', await db.all(datasets.active_jobs(row["id"])))
    refuse_if_used(f'Dataset "{row["name"]}"', await db.all(datasets.dependents(row["id"])))
    await db.write(datasets.delete(row["id"]))
    await to_thread.run_sync(remove, [layout.dataset(row["id"]), layout.upload(row["id"])])
    return _dataset(row)
