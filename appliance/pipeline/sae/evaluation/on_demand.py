"""Evaluation on demand: measure a finished SAE again (its export, on raw activations) on the
held-out activations of its source and, where its model is there, spliced into the model.

Also what imported SAEs use: they have no training source, so only the splice evaluation runs,
on the dataset the request names.
"""

from __future__ import annotations

import time
from typing import Any

import msgspec

from appliance.config import get_settings
from appliance.data.rows import update_row
from appliance.jobs.context import JobContext
from appliance.jobs.runner import memory_manager
from appliance.memory.admission import Estimate, estimate_model, estimate_sae_training
from appliance.pipeline.sae.evaluation.splice import held_out_quality
from appliance.pipeline.sae.training.loop import TrainParams, open_source, splice_evaluation, training_dir


class EvaluateParams(msgspec.Struct):
    training_id: str
    train: dict[str, Any] | None  # the run's TrainParams; None for imported SAEs
    evaluation: dict[str, Any]  # the splice spec (empty: skip the splice)
    previous: dict[str, Any] = msgspec.field(default_factory=dict)
    parameters: int = 0  # the model's size, for the memory estimate
    precision: str = "fp32"


def run(ctx: JobContext) -> dict[str, Any]:
    import torch

    from appliance.pipeline.sae.io.saelens import load_folder

    params = msgspec.convert(ctx.params, EvaluateParams)
    data_dir = get_settings().data_dir
    folder = training_dir(data_dir, params.training_id)
    sae, _ = load_folder(folder / "export")
    estimate = Estimate({**estimate_sae_training(sae.cfg.d_in, sae.cfg.d_sae, 0, optimizer="sgd").parts,
                         **estimate_model(params.parameters, params.precision).parts})
    began = time.monotonic()
    evaluation = dict(params.previous)
    with memory_manager().admit(ctx, estimate):
        if params.train is not None:
            ctx.progress(0.05, "Reading held-out activations", force=True)
            source = open_source(msgspec.convert(params.train, TrainParams), data_dir)
            try:
                x, y = source.held_out()
            finally:
                source.close()
            quality, frequency = held_out_quality(sae, x, y)
            evaluation.update(quality)
            from safetensors.torch import save_file

            save_file({"sparsity": torch.log10(frequency.clamp_min(1e-10)).contiguous()},
                      str(folder / "export" / "sparsity.safetensors"))
        if params.evaluation:
            ctx.progress(0.4, "Splicing the SAE into the model on held-out text", force=True)
            evaluation.update(splice_evaluation(params.evaluation, sae, data_dir))
    evaluation["evaluated_at"] = time.time()
    evaluation["evaluation_seconds"] = round(time.monotonic() - began, 1)
    update_row("trainings", params.training_id, evaluation=msgspec.json.encode(evaluation).decode())
    ctx.event("training.updated", {"training_id": params.training_id, "status": "evaluated"})
    return {"training_id": params.training_id, **{k: v for k, v in evaluation.items() if not isinstance(v, dict)}}
