"""Download a dataset from the Hugging Face Hub with the `datasets` library, then ingest it.

The repo is probed first so the user gets the right reason: not found, no access (gated or private,
give a token), or the Hub unreachable. With ``max_samples`` the dataset is streamed and only that
many rows are fetched. The token comes from the write-only secret store and is deleted after use.
"""

from __future__ import annotations

import shutil
from itertools import islice
from pathlib import Path
from typing import Any

from appliance.contracts.params.datasets import DownloadParams
from appliance.data import datasets, samples
from appliance.data.database import Database
from appliance.data.layout import DataLayout
from appliance.data.secrets import delete_secret, read_secret
from appliance.errors import AppError, UpstreamUnavailable, ValidationError
from appliance.jobs.context import JobContext
from appliance.jobs.records import Job
from appliance.pipeline.datasets.ingest import ingest
from appliance.pipeline.hub import is_network_error, probe


class UnsupportedFormat(AppError):
    code = "UNSUPPORTED_FORMAT"
    status_code = 422


def run(ctx: JobContext, params: DownloadParams) -> dict[str, Any]:
    layout = ctx.layout
    token = read_secret(layout.root, params.dataset_id)
    try:
        ctx.progress(0.01, f"Contacting the Hub for {params.repo_id}", force=True)
        probe("dataset", params.repo_id, token)
        from datasets import Dataset, load_dataset

        ctx.progress(0.05, "Downloading", force=True)
        try:
            if params.max_samples:
                stream = load_dataset(params.repo_id, params.config, split=params.split, streaming=True, token=token)
                rows = []
                for row in islice(stream, params.max_samples):
                    rows.append(row)
                    if len(rows) % 500 == 0:
                        ctx.progress(0.05 + 0.4 * len(rows) / params.max_samples, f"Downloaded {len(rows):,} samples")
                data = Dataset.from_list(rows)
            else:
                # Raw files land in the Hub cache (data/cache/huggingface), which survives a failed
                # attempt: a retry, or a re-queue after a worker restart, resumes them with Range
                # requests instead of starting over.
                data = load_dataset(
                    params.repo_id,
                    params.config,
                    split=params.split,
                    token=token,
                    cache_dir=str(layout.dataset_cache(params.dataset_id)),
                )
        except FileNotFoundError as exc:
            # The repo answered the probe; "no data files" means none in a format the library reads.
            if type(exc).__name__ == "DataFilesNotFoundError" or "data files" in str(exc).lower():
                raise UnsupportedFormat(
                    f"{params.repo_id} has no data files the datasets library can read "
                    "(Parquet, JSON Lines, CSV, text, Arrow...): "
                    f"{str(exc)[:200]}"
                ) from None
            if is_network_error(exc) or "doesn't exist" in str(exc) or "cannot be accessed" in str(exc):
                raise UpstreamUnavailable(
                    f"Lost the Hub during the download ({type(exc).__name__}): {str(exc)[:200]}; try again"
                ) from None
            raise
        except ValueError as exc:  # bad split or config names
            raise ValidationError(f"{params.repo_id}: {str(exc)[:300]}", details={"field": "split"}) from None
        except Exception as exc:  # noqa: BLE001 - sorted below: network trouble vs anything else
            # The repo answered the probe, so "doesn't exist" from here on means the Hub went away.
            if is_network_error(exc) or "doesn't exist" in str(exc) or "cannot be accessed" in str(exc):
                raise UpstreamUnavailable(
                    f"Lost the Hub during the download ({type(exc).__name__}): {str(exc)[:200]}; try again"
                ) from None
            raise
        if params.text_column not in data.column_names:
            raise ValidationError(
                f"{params.repo_id} has no column {params.text_column!r}; it has: {', '.join(data.column_names)}",
                details={"field": "text_column"},
            )
        ctx.db.execute(datasets.set_status(params.dataset_id, "ingesting"))
        ctx.progress(0.5, "Ingesting", force=True)
        result = ingest(ctx, params.dataset_id, data, params.text_column, split=params.split)
        _forget_raw_files(params.repo_id)
        return result
    finally:
        delete_secret(layout.root, params.dataset_id)
        shutil.rmtree(layout.dataset_cache(params.dataset_id), ignore_errors=True)


def _forget_raw_files(repo_id: str) -> None:
    """The ingested Arrow copy is the dataset; the raw download need not take the disk twice."""
    from huggingface_hub import constants

    shutil.rmtree(Path(constants.HF_HUB_CACHE) / f"datasets--{repo_id.replace('/', '--')}", ignore_errors=True)


def cleanup(job: Job, params: DownloadParams, layout: DataLayout, db: Database) -> None:
    """A failed download keeps its row (set to error with the reason when the job ended, by
    appliance.jobs.finalize) but nothing it wrote: no files, no samples, no token."""
    shutil.rmtree(layout.dataset(params.dataset_id), ignore_errors=True)
    delete_secret(layout.root, params.dataset_id)
    db.execute(samples.delete_for(params.dataset_id))
