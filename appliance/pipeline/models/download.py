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

import msgspec

from appliance.config import get_settings
from appliance.data.rows import update_row
from appliance.data.secrets import delete_secret, read_secret
from appliance.errors import UpstreamUnavailable, ValidationError
from appliance.jobs.context import JobContext
from appliance.pipeline.hub import is_network_error, probe
from appliance.pipeline.models.loading import register

SIDE_FILES = ("*.json", "tokenizer.model", "*.tiktoken", "merges.txt", "vocab.txt", "*.py")


class ModelDownloadParams(msgspec.Struct):
    model_id: str
    repo_id: str
    path: str
    precision: str = "fp32"
    revision: str | None = None
    trust_remote_code: bool = False


def wanted_files(siblings: list[Any]) -> tuple[list[str], int]:
    """The files to fetch and their total size: top-level only, safetensors preferred over .bin."""
    from fnmatch import fnmatch

    names = {s.rfilename: (s.size or 0) for s in siblings if "/" not in s.rfilename}
    weights = [n for n in names if n.endswith(".safetensors")] or [n for n in names if n.endswith(".bin")]
    if not weights:
        raise ValidationError("The repo has no safetensors or .bin weights at its top level",
                              details={"field": "repo_id"})
    side = [n for n in names if any(fnmatch(n, p) for p in SIDE_FILES)]
    files = sorted(set(weights + side))
    return files, sum(names[n] for n in files)


def _on_disk(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def run(ctx: JobContext) -> dict[str, Any]:
    from huggingface_hub import snapshot_download

    params = msgspec.convert(ctx.params, ModelDownloadParams)
    settings = get_settings()
    path = Path(params.path)
    token = read_secret(settings.data_dir, params.model_id)
    try:
        ctx.progress(0.01, f"Contacting the Hub for {params.repo_id}", force=True)
        info: Any = probe("model", params.repo_id, token, params.revision)
        files, total = wanted_files(info.siblings or [])
        if any(f.endswith(".py") for f in files) and not params.trust_remote_code:
            files = [f for f in files if not f.endswith(".py")]
        # Files land in a staging folder named after the repo, so a retry after a failure (a new
        # model row) resumes the interrupted files instead of starting over.
        staging = settings.data_dir / "cache" / "model-downloads" / params.repo_id.replace("/", "--")
        staging.mkdir(parents=True, exist_ok=True)
        outcome: dict[str, BaseException | None] = {}

        def fetch() -> None:
            try:
                snapshot_download(params.repo_id, revision=info.sha, token=token, local_dir=str(staging),
                                  allow_patterns=files, max_workers=2)
                outcome["error"] = None
            except BaseException as exc:  # noqa: BLE001 - handed to the job thread below
                outcome["error"] = exc

        # The download runs in its own thread; this one reports bytes on disk and honours cancel.
        thread = threading.Thread(target=fetch, name=f"download-{params.model_id}", daemon=True)
        thread.start()
        while thread.is_alive():
            ctx.check()
            done = _on_disk(staging)
            ctx.progress(0.02 + 0.78 * min(1.0, done / total) if total else 0.4,
                         f"Downloaded {done / 1e6:,.1f} of {total / 1e6:,.1f} MB", {"bytes": done, "total": total})
            thread.join(0.5)
        done = _on_disk(staging)
        ctx.progress(0.8, f"Downloaded {done / 1e6:,.1f} of {total / 1e6:,.1f} MB", {"bytes": done, "total": total},
                     force=True)
        error = outcome.get("error")
        if error is not None:
            if is_network_error(error):
                raise UpstreamUnavailable(f"Lost the Hub during the download ({type(error).__name__}); "
                                          "try again: finished files are kept") from None
            raise error
        shutil.rmtree(staging / ".cache", ignore_errors=True)
        shutil.rmtree(path, ignore_errors=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staging, path)
        update_row("models", params.model_id, status="quantizing" if params.precision in ("q8", "q4") else "loading")
        ctx.progress(0.85, f"Loading ({params.precision})", force=True)
        return register(ctx)
    finally:
        delete_secret(settings.data_dir, params.model_id)


def cleanup(job: Any) -> None:
    """A failed download keeps its row with the reason; finished files stay for a retry's resume
    only while the row exists (deleting the model removes them)."""
    from appliance.pipeline.models.loading import fail

    delete_secret(get_settings().data_dir, job.params.get("model_id", ""))
    fail(job)
