"""Datasets: import a local file, upload, download from the Hub, the demo; list, read, browse and
search samples, tokenize, delete. Routing and validation only: the rules are in
appliance.services.datasets."""

from __future__ import annotations

from litestar import Controller, Request, Response, delete, get, post
from litestar.params import Parameter

from appliance.api import multipart, uploads
from appliance.api.apidoc import errors, form_fields
from appliance.api.envelope import Accepted, Envelope, ok
from appliance.api.queueing import accepted
from appliance.config import Settings
from appliance.contracts.tokenization import TokenizeSettings
from appliance.data.database import AsyncDatabase
from appliance.data.layout import DataLayout
from appliance.jobs.async_store import AsyncJobStore
from appliance.services import datasets as service
from appliance.services.datasets import Dataset, DownloadRequest, ImportRequest, Sample, UploadFields


class DatasetsController(Controller):
    path = "/api/datasets"
    tags = ["datasets"]

    @post("/import", summary="Import a file from <data dir>/imports (jsonl, json, csv, parquet, txt)")
    async def import_file(
        self, jobs: AsyncJobStore, layout: DataLayout, data: ImportRequest
    ) -> Response[Envelope[Accepted]]:
        return accepted(await service.import_file(jobs, layout, data))

    @post(
        "/upload",
        request_max_body_size=None,
        opt={**multipart.FILE_UPLOAD, **form_fields(UploadFields)},
        summary="Upload a file as multipart/form-data (field `file`; optional text_column, format, txt_mode, name)",
    )
    async def upload(
        self, request: Request, jobs: AsyncJobStore, settings: Settings, layout: DataLayout
    ) -> Response[Envelope[Accepted]]:
        uploads.check_announced(request, settings)
        return accepted(
            await service.upload(jobs, settings, layout, uploads.body(request), request.headers.get("content-type", ""))
        )

    @post(
        "/demo",
        responses=errors(409),
        summary="(Re)create the demo dataset from this device's Python standard library (409 while one exists)",
    )
    async def demo(self, jobs: AsyncJobStore) -> Response[Envelope[Accepted]]:
        return accepted(await service.create_demo(jobs))

    @post("/download", summary="Download a dataset from the Hugging Face Hub (streamed when max_samples is set)")
    async def download(
        self, jobs: AsyncJobStore, layout: DataLayout, data: DownloadRequest
    ) -> Response[Envelope[Accepted]]:
        return accepted(await service.download(jobs, layout, data))

    @get("/", summary="Datasets, newest first")
    async def list_datasets(self, db: AsyncDatabase) -> Envelope[list[Dataset]]:
        return ok(await service.list_datasets(db))

    @get("/{dataset_id:str}", summary="One dataset with its statistics and tokenizations")
    async def get_dataset(self, db: AsyncDatabase, dataset_id: str) -> Envelope[Dataset]:
        return ok(await service.get_dataset(db, dataset_id))

    @post(
        "/{dataset_id:str}/tokenize",
        responses=errors(409),
        summary="Tokenize a ready dataset (settings are kept per tokenizer)",
    )
    async def tokenize(
        self, db: AsyncDatabase, jobs: AsyncJobStore, layout: DataLayout, dataset_id: str, data: TokenizeSettings
    ) -> Response[Envelope[Accepted]]:
        return accepted(await service.tokenize(db, jobs, layout, dataset_id, data))

    @get("/{dataset_id:str}/samples", summary="Browse samples: pagination, split filter, full-text search")
    async def samples(
        self,
        db: AsyncDatabase,
        dataset_id: str,
        page: int = Parameter(default=1, ge=1, le=10_000_000),
        limit: int = Parameter(default=10, ge=1, le=200),
        split: str | None = Parameter(default=None, max_length=100),
        search: str | None = Parameter(default=None, max_length=500),
    ) -> Envelope[list[Sample]]:
        found, pagination = await service.sample_page(db, dataset_id, page, limit, split, search)
        return ok(found, pagination)

    @delete(
        "/{dataset_id:str}",
        responses=errors(409),
        status_code=200,
        summary="Delete a dataset and its files (409 while in use)",
    )
    async def delete_dataset(self, db: AsyncDatabase, layout: DataLayout, dataset_id: str) -> Envelope[Dataset]:
        return ok(await service.delete_dataset(db, layout, dataset_id))
