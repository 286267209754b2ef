"""Loading causal LMs in the worker at a chosen precision, and registering them (architecture, size)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import msgspec

from appliance.contracts.events import ModelUpdated
from appliance.contracts.params.models import ModelImportParams, ModelRegisterParams
from appliance.data import models
from appliance.data.database import Database
from appliance.data.events import insert as insert_event
from appliance.data.layout import DataLayout
from appliance.errors import ValidationError
from appliance.jobs.context import JobContext
from appliance.jobs.records import Job
from appliance.pipeline.models.architecture import describe


def device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def load(path: str | Path, precision: str = "fp32", on: str | None = None) -> Any:
    """A model ready for inference (eval mode, no grads) in ``precision`` on ``on`` (default: the GPU
    if there is one)."""
    import torch
    from transformers import AutoModelForCausalLM

    on = on or device()
    model: Any  # transformers' partial stubs type .to() for a different class
    if precision in ("fp32", "fp16", "bf16"):
        dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[precision]
        model = AutoModelForCausalLM.from_pretrained(str(path), dtype=dtype)
        model = model.to(on)
    elif precision in ("q8", "q4") and on == "cuda":
        from transformers import BitsAndBytesConfig

        quant = (
            BitsAndBytesConfig(load_in_8bit=True)
            if precision == "q8"
            else BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.bfloat16)
        )
        model = AutoModelForCausalLM.from_pretrained(str(path), quantization_config=quant, device_map={"": 0})
    elif precision == "q8":
        model = AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float32)
        model = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
    else:
        raise ValidationError(f"Precision {precision} is not available on {on}", details={"field": "precision"})
    model.eval()
    model.requires_grad_(False)
    return model


def folder_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def loading_status(precision: str) -> str:
    """What a model is while it loads: quantizing takes longer, and the UI says so."""
    return "quantizing" if precision in ("q8", "q4") else "loading"


def register(ctx: JobContext, params: ModelRegisterParams) -> dict[str, Any]:
    """Load a model whose files are in place, read its architecture, mark it ready."""
    path = Path(params.path)
    ctx.db.execute(models.change(params.model_id, status=loading_status(params.precision)))
    ctx.progress(max(0.1, ctx.fraction), f"Loading the model ({params.precision})", force=True)
    model = load(path, params.precision)
    ctx.check()
    architecture = describe(model)
    # The row and the event the UI watches commit together: a client that sees the event reads "ready".
    ctx.db.write(
        models.change(
            params.model_id,
            status="ready",
            architecture=msgspec.json.encode(architecture).decode(),
            size_bytes=folder_size(path),
        ),
        insert_event(
            ctx.topic,
            "model.updated",
            ModelUpdated(model_id=params.model_id, status="ready"),
            ctx.job_id,
            True,
            time.time(),
        ),
    )
    return {"model_id": params.model_id, "parameters": architecture["parameters"], "layers": architecture["layers"]}


def import_folder(ctx: JobContext, params: ModelImportParams) -> dict[str, Any]:
    """Copy a model folder from the imports folder (top-level files only), then register it."""
    import shutil

    source, path = Path(params.source), Path(params.path)
    ctx.progress(0.02, f"Copying {source.name}", force=True)
    path.mkdir(parents=True, exist_ok=True)
    files = [f for f in sorted(source.iterdir()) if f.is_file()]
    for index, file in enumerate(files):
        ctx.check()
        shutil.copy2(file, path / file.name)
        ctx.progress(0.02 + 0.6 * (index + 1) / len(files), f"Copied {file.name}")
    return register(ctx, ModelRegisterParams(model_id=params.model_id, path=params.path, precision=params.precision))


def import_failed(job: Job, params: ModelImportParams, layout: DataLayout, db: Database) -> None:
    """A model that could not be imported keeps its row, with the reason (set when the job ended, by
    appliance.jobs.finalize); its partial copy goes (the source stays)."""
    import shutil

    shutil.rmtree(params.path, ignore_errors=True)
