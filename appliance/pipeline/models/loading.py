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
from appliance.memory.admission import estimate_model
from appliance.memory.checkpoint import read_checkpoint, safetensors_files
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
        stored = read_checkpoint(path)
        if stored is not None and (on != "cpu" or stored.converts_to(precision)):
            model = _load_converted(Path(path), safetensors_files(path), dtype, on)
        else:
            # Already in its precision on the CPU (or not safetensors): transformers memory-maps the file and
            # the weights stay its pages, with no copy at all.
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


def _load_converted(path: Path, files: list[Path], dtype: Any, on: str) -> Any:
    """Load a checkpoint that must change precision or device, one tensor at a time.

    transformers memory-maps safetensors, and every page it reads stays resident until the whole load
    ends, so a converted load peaks at the converted weights plus the whole checkpoint (an fp16 file
    loaded as bf16: twice the weights; loaded on a GPU: the file's pages beside the device copy). Read
    with pread instead, each tensor's source bytes are freed once converted and placed on ``on``: the
    load peaks at the weights in their precision plus the few tensors in flight. The state dict is
    transformers' own lazy safetensors slices (what it builds itself), handed in through its public
    ``state_dict`` argument, which takes no folder, hence the config and generation settings read here.
    """
    from contextlib import ExitStack

    from safetensors import safe_open
    from transformers import AutoConfig, AutoModelForCausalLM, GenerationConfig

    config = AutoConfig.from_pretrained(str(path))
    model_class = _causal_lm_class(AutoModelForCausalLM, config)
    if model_class is None:  # custom code (auto_map): transformers' own path, with its mmap transient
        model: Any = AutoModelForCausalLM.from_pretrained(str(path), dtype=dtype)
        return model.to(on)
    with ExitStack() as files_open:
        state: dict[str, Any] = {}
        for file in files:
            handle = files_open.enter_context(safe_open(str(file), framework="pt", device="cpu", backend="pread"))
            state.update({key: handle.get_slice(key) for key in handle.keys()})
        model = model_class.from_pretrained(
            None, config=config, state_dict=state, dtype=dtype, device_map=None if on == "cpu" else {"": on}
        )
    if (path / "generation_config.json").is_file():
        model.generation_config = GenerationConfig.from_pretrained(str(path))
    return model


def _causal_lm_class(auto: Any, config: Any) -> Any | None:
    """The class AutoModelForCausalLM would build for ``config`` (as its _get_model_class picks it), or None."""
    try:
        found = auto._model_mapping[type(config)]
    except KeyError:
        return None
    if not isinstance(found, (list, tuple)):
        return found
    by_name = {cls.__name__: cls for cls in found}
    return next((by_name[a] for a in getattr(config, "architectures", None) or [] if a in by_name), found[0])


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
    with ctx.memory.admit(ctx, estimate_model(0, params.precision, checkpoint=path)):
        model = load(path, params.precision)
        ctx.check()
        architecture = describe(model)
        del model  # not kept: the jobs that use it load it again at their own precision
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
