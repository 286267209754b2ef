"""Download a causal LM from the Hugging Face Hub with ``snapshot_download``, then load it at its
precision and read its architecture.

Only what a causal LM needs is fetched: top-level config, tokenizer and weight files, safetensors
when the repo has them (pickled ``.bin`` weights only otherwise). Files are staged under
``cache/model-downloads/<repo>/`` (finished files and partial ones survive a failure, so a retry
resumes) and moved to ``models/<id>/`` when complete. Byte progress is measured on disk.
"""

from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path
from typing import Any

from appliance.contracts.params.models import ModelDownloadParams
from appliance.data import models
from appliance.data.database import Database
from appliance.data.layout import DataLayout
from appliance.data.secrets import delete_secret, read_secret
from appliance.errors import UpstreamUnavailable, ValidationError
from appliance.jobs.context import JobContext
from appliance.jobs.records import Job
from appliance.pipeline.hub import is_network_error, probe
from appliance.pipeline.models.loading import loading_status, register

SIDE_FILES = ("*.json", "tokenizer.model", "*.tiktoken", "merges.txt", "vocab.txt", "*.py")


def wanted_files(siblings: list[Any]) -> tuple[list[str], int]:
    """The files to fetch and their total size: top-level only, safetensors preferred over .bin."""
    from fnmatch import fnmatch

    names = {s.rfilename: (s.size or 0) for s in siblings if "/" not in s.rfilename}
    weights = [n for n in names if n.endswith(".safetensors")] or [n for n in names if n.endswith(".bin")]
    if not weights:
        raise ValidationError(
            "The repo has no safetensors or .bin weights at its top level", details={"field": "repo_id"}
        )
    side = [n for n in names if any(fnmatch(n, p) for p in SIDE_FILES)]
    files = sorted(set(weights + side))
    return files, sum(names[n] for n in files)


def _on_disk(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def run(ctx: JobContext, params: ModelDownloadParams) -> dict[str, Any]:
    from huggingface_hub import snapshot_download

    path = Path(params.path)
    token = read_secret(ctx.layout.root, params.model_id)
    try:
        ctx.progress(0.01, f"Contacting the Hub for {params.repo_id}", force=True)
        info: Any = probe("model", params.repo_id, token, params.revision)
        files, total = wanted_files(info.siblings or [])
        if any(f.endswith(".py") for f in files) and not params.trust_remote_code:
            files = [f for f in files if not f.endswith(".py")]
        # Files land in a staging folder named after the repo, so a retry after a failure (a new
        # model row) resumes the interrupted files instead of starting over.
        staging = ctx.layout.model_staging(params.repo_id)
        staging.mkdir(parents=True, exist_ok=True)
        outcome: dict[str, BaseException | None] = {}

        def fetch() -> None:
            try:
                snapshot_download(
                    params.repo_id,
                    revision=info.sha,
                    token=token,
                    local_dir=str(staging),
                    allow_patterns=files,
                    max_workers=2,
                )
                outcome["error"] = None
            except BaseException as exc:  # noqa: BLE001 - handed to the job thread below
                outcome["error"] = exc

        # The download runs in its own thread; this one reports bytes on disk and honours cancel.
        thread = threading.Thread(target=fetch, name=f"download-{params.model_id}", daemon=True)
        thread.start()
        while thread.is_alive():
            ctx.check()
            done = _on_disk(staging)
            ctx.progress(
                0.02 + 0.78 * min(1.0, done / total) if total else 0.4,
                f"Downloaded {done / 1e6:,.1f} of {total / 1e6:,.1f} MB",
                bytes=done,
                total=total,
            )
            thread.join(0.5)
        done = _on_disk(staging)
        ctx.progress(0.8, f"Downloaded {done / 1e6:,.1f} of {total / 1e6:,.1f} MB", bytes=done, total=total, force=True)
        error = outcome.get("error")
        if error is not None:
            if is_network_error(error):
                raise UpstreamUnavailable(
                    f"Lost the Hub during the download ({type(error).__name__}); try again: finished files are kept"
                ) from None
            raise error
        shutil.rmtree(staging / ".cache", ignore_errors=True)
        shutil.rmtree(path, ignore_errors=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staging, path)
        ctx.db.execute(models.change(params.model_id, status=loading_status(params.precision)))
        ctx.progress(0.85, f"Loading ({params.precision})", force=True)
        return register(ctx, params.register())
    finally:
        delete_secret(ctx.layout.root, params.model_id)


def cleanup(job: Job, params: ModelDownloadParams, layout: DataLayout, db: Database) -> None:
    """A failed download keeps its row with the reason, and its staged files for a retry to resume;
    only the Hub token goes (the handler removes it too, but not if the worker died under it)."""
    delete_secret(layout.root, params.model_id)
