"""Loading causal LMs in the worker at a chosen precision, and registering them (architecture, size)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec

from appliance.data.rows import update_row
from appliance.errors import ValidationError
from appliance.jobs.context import JobContext
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
    if precision in ("fp32", "fp16", "bf16"):
        dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[precision]
        model = AutoModelForCausalLM.from_pretrained(str(path), dtype=dtype).to(on)
    elif precision in ("q8", "q4") and on == "cuda":
        from transformers import BitsAndBytesConfig

        quant = BitsAndBytesConfig(load_in_8bit=True) if precision == "q8" else \
            BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.bfloat16)
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


def register(ctx: JobContext) -> dict[str, Any]:
    """Load a model whose files are in place, read its architecture, mark it ready."""
    model_id = ctx.params["model_id"]
    path, precision = Path(ctx.params["path"]), ctx.params.get("precision", "fp32")
    update_row("models", model_id, status="quantizing" if precision in ("q8", "q4") else "loading")
    ctx.progress(max(0.1, ctx.fraction), f"Loading the model ({precision})", force=True)
    model = load(path, precision)
    ctx.check()
    architecture = describe(model)
    update_row("models", model_id, status="ready", architecture=msgspec.json.encode(architecture).decode(),
            size_bytes=folder_size(path))
    ctx.event("model.updated", {"model_id": model_id, "status": "ready"})
    return {"model_id": model_id, "parameters": architecture["parameters"], "layers": architecture["layers"]}


def import_folder(ctx: JobContext) -> dict[str, Any]:
    """Copy a model folder from the imports folder (top-level files only), then register it."""
    import shutil

    source, path = Path(ctx.params["source"]), Path(ctx.params["path"])
    ctx.progress(0.02, f"Copying {source.name}", force=True)
    path.mkdir(parents=True, exist_ok=True)
    files = [f for f in sorted(source.iterdir()) if f.is_file()]
    for index, file in enumerate(files):
        ctx.check()
        shutil.copy2(file, path / file.name)
        ctx.progress(0.02 + 0.6 * (index + 1) / len(files), f"Copied {file.name}")
    return register(ctx)


def fail(job: Any) -> None:
    """A model that could not be loaded keeps its row, with the reason (set when the job ended, by
    appliance.jobs.finalize); an import's partial copy goes (the source stays)."""
    if job.kind == "model.import" and job.params.get("path"):
        import shutil

        shutil.rmtree(job.params["path"], ignore_errors=True)
