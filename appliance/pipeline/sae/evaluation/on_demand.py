"""Evaluation on demand: measure a finished SAE again (its export, on raw activations) on the
held-out activations of its source and, where its model is there, spliced into the model.

Also what imported SAEs use: they have no training source, so only the splice evaluation runs,
on the dataset the request names.
"""

from __future__ import annotations

import time
from typing import Any

import msgspec

from appliance.contracts.params.training import EvaluateRun
from appliance.data import trainings as sql
from appliance.jobs.context import JobContext
from appliance.memory.admission import Estimate, estimate_model, estimate_sae_training
from appliance.pipeline.sae.evaluation.splice import held_out_quality
from appliance.pipeline.sae.training.loop import open_source, splice_evaluation


def run(ctx: JobContext, params: EvaluateRun) -> dict[str, Any]:
    import torch

    from appliance.pipeline.sae.io.saelens import load_folder

    export = ctx.layout.export(params.training_id)
    sae, _ = load_folder(export)
    estimate = Estimate(
        {
            **estimate_sae_training(sae.cfg.d_in, sae.cfg.d_sae, 0, optimizer="sgd").parts,
            **estimate_model(
                params.parameters,
                params.precision,
                checkpoint=params.evaluation.model_path if params.evaluation else None,
            ).parts,
        }
    )
    began = time.monotonic()
    # What this run does not measure again stays as the last evaluation left it.
    row = ctx.db.one(sql.get(params.training_id))
    evaluation = msgspec.json.decode(row["evaluation"]) if row is not None and row["evaluation"] else {}
    with ctx.memory.admit(ctx, estimate):
        if params.train is not None:
            ctx.progress(0.05, "Reading held-out activations", force=True)
            source = open_source(params.train, ctx.layout, check=ctx.check)
            try:
                x, y = source.held_out()
            finally:
                source.close()
            quality, frequency = held_out_quality(sae, x, y)
            evaluation.update(quality)
            from safetensors.torch import save_file

            save_file(
                {"sparsity": torch.log10(frequency.clamp_min(1e-10)).contiguous()}, str(export / "sparsity.safetensors")
            )
        if params.evaluation is not None:
            ctx.progress(0.4, "Splicing the SAE into the model on held-out text", force=True)
            evaluation.update(splice_evaluation(params.evaluation, sae, ctx.layout, ctx.check))
    evaluation["evaluated_at"] = time.time()
    evaluation["evaluation_seconds"] = round(time.monotonic() - began, 1)
    # The status stays (completed or stopped); the event tells the UI to read the new figures.
    ctx.db.write(
        *sql.status_change(
            params.training_id, None, job_id=ctx.job_id, event_status="evaluated", evaluation=sql.encode(evaluation)
        )
    )
    return {"training_id": params.training_id, **{k: v for k, v in evaluation.items() if not isinstance(v, dict)}}
