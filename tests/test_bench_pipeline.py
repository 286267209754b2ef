"""``mistudio bench pipeline``: its command line, its verdicts, the Orin Nano estimate's arithmetic, and
how it runs a stage and times a cancel, through a real API and worker (the diagnostic job stands in for
a stage: the whole suite takes minutes even at a tiny size; ``mistudio bench pipeline --shape 2x64``
runs it).
"""

from __future__ import annotations

import math

import httpx
import pytest

from tests.support import Appliance


def _args(*argv: str):
    from appliance.commands.cli import build_parser

    return build_parser().parse_args(["bench", "pipeline", *argv])


def test_the_command_line_chooses_the_model_the_budget_and_the_size() -> None:
    from appliance.commands.bench.harness import BenchError
    from appliance.commands.bench.pipeline import FULL, Plan, plan_from

    default = plan_from(_args())
    assert (default.layers, default.width, default.heads, default.memory_mb) == (12, 768, 12, 8192)
    assert default == Plan() and default.layer == 6 and default.d_sae == 4 * 768 and default.precision == "fp32"
    tiny = plan_from(_args("--shape", "2x64", "--memory-mb", "4096", "--samples", "16"), cuda=True)
    assert (tiny.layers, tiny.width, tiny.heads, tiny.memory_mb, tiny.samples) == (2, 64, 1, 4096, 16)
    assert tiny.precision == "bf16"  # on a GPU, as a board runs its model
    full = plan_from(_args("--full"))
    assert all(getattr(full, name) == value for name, value in FULL.items())
    assert full.steps > default.steps and full.context > default.context
    for shape in ("12", "12x700", "1x768", "axb"):
        with pytest.raises(BenchError, match="--shape"):
            plan_from(_args("--shape", shape))


def test_progress_is_a_fraction_or_a_count_under_way_and_a_cancel_waits_for_the_loop() -> None:
    from appliance.commands.bench.pipeline import advanced, moved

    loading = {"progress": 0.01, "message": "Loading the model (fp32)"}
    filling = {"progress": 0.0, "message": "Filling the shuffle buffer: 4,920 of 8,411 tokens, 184 tokens/s"}
    assert moved(loading) and moved(filling)  # a streamed training counts its first buffer at 0 %
    assert not moved({"progress": 0.0, "message": "Measuring the activations' scale"})
    assert not moved({"progress": 0.0, "message": "Step 0 of 1,500"})
    assert not advanced(loading, loading)  # still setting up: not yet the loop a cancel must interrupt
    assert advanced({"progress": 0.03, "message": "16 of 1,024 samples"}, loading)
    assert advanced({"progress": 0.0, "message": "Filling the shuffle buffer: 5,100 of 8,411 tokens"}, filling)


def _stage(**fields):
    from appliance.commands.bench.pipeline import Stage

    job = {"id": "job_x", "started_at": "2026-01-01T00:00:00Z", "finished_at": "2026-01-01T00:00:12.5Z"}
    return Stage("extraction", job=job, ratio_target=0.9, first_progress_s=0.4, **fields)


def _by_suffix(figures, suffix: str):
    return next(f for f in figures if f.name.endswith(suffix))


def test_each_stage_is_judged_on_its_floor_its_memory_plan_first_progress_and_cancel() -> None:
    from appliance.commands.bench.harness import EXIT_MISSED, exit_code
    from appliance.commands.bench.pipeline import stage_figures, stages_table

    stage = _stage(rate=950.0, floor=1000.0, cancel_s=0.8, cancel_note="at 12%: batch 3")
    stage.job["memory_planned_mb"], stage.job["memory_peak_mb"] = 1200.0, 1000.0
    figures = stage_figures(stage)
    assert [f.verdict for f in figures] == ["PASS"] * 4
    assert _by_suffix(figures, "/ floor").value == pytest.approx(0.95)
    assert _by_suffix(figures, "plan / peak").value == pytest.approx(1.2)
    assert "12.5 s" in _by_suffix(figures, "first progress").note  # the job's own running time
    assert "1,200 MB" in stages_table([stage]) and "0.95x" in stages_table([stage])

    def memory(planned: float | None, peak: float | None) -> str:
        stage.job.update(memory_planned_mb=planned, memory_peak_mb=peak)
        return _by_suffix(stage_figures(stage), "plan / peak").verdict

    assert memory(900.0, 1000.0) == "MISS"  # the plan did not cover the peak
    assert memory(1400.0, 1000.0) == "MISS"  # more than 1.3x reserved
    assert memory(1000.0, 1000.0) == "PASS"
    assert memory(None, 1000.0) == "MISS"  # reported without a value
    del stage.job["memory_planned_mb"], stage.job["memory_peak_mb"]
    unreported = _by_suffix(stage_figures(stage), "plan / peak")
    assert unreported.verdict == "" and unreported.note.startswith("n/a")  # an appliance without the fields
    stage.job["result"] = {"memory_planned_mb": 1100.0, "memory_peak_mb": 1000.0}  # or in the job's result
    assert _by_suffix(stage_figures(stage), "plan / peak").verdict == "PASS"

    failed = _stage(rate=950.0, floor=1000.0, errors=["cancel run: job job_y ended completed, not cancelled"])
    cancel = _by_suffix(stage_figures(failed), "cancel")
    assert cancel.verdict == "MISS" and cancel.value is None
    slow = stage_figures(_stage(rate=500.0, floor=1000.0, cancel_s=71.0))
    assert _by_suffix(slow, "/ floor").verdict == "MISS" and _by_suffix(slow, "cancel").verdict == "MISS"
    assert exit_code(slow) == EXIT_MISSED


def test_the_orin_nano_estimate_carries_the_measured_efficiency_to_the_boards_published_figures() -> None:
    from appliance.commands.bench import orin

    # A GPU whose matmuls reach 100 TFLOP/s, running the forward and the step at 50% and 25% of that.
    layers_run, width, context, d_sae = 7, 768, 64, 3072
    forward = 0.5 * 100e12 / orin.forward_flops(layers_run, width, context)
    step = 0.25 * 100e12 / orin.step_flops(width, d_sae)
    measured = orin.Measured(forward, step, 100.0, layers_run, width, context, d_sae)
    slow = orin.Board("no bandwidth limit", 10.0, 1e9)
    result = orin.orin_estimate(measured, slow)
    assert result["forward_share"] == pytest.approx(0.5) and result["step_share"] == pytest.approx(0.25)
    flops = 10.0e12 * orin.MATMUL_SHARE
    target = dict(layers_run=orin.GPT2_SMALL["layer"] + 1, width=768, context=orin.GPT2_SMALL["context"])
    assert result["forward_tok_s"] == pytest.approx(0.5 * flops / orin.forward_flops(**target))
    assert result["step_act_s"] == pytest.approx(0.25 * flops / orin.step_flops(768, orin.ESTIMATE_EXPANSION * 768))
    tokens = orin.ESTIMATE_STEPS * orin.ESTIMATE_BATCH
    per_activation = 1 / result["forward_tok_s"] + 1 / result["step_act_s"]
    assert result["minutes"] == pytest.approx(tokens * per_activation / 60)
    assert result["activations_in_target"] == pytest.approx(30 * 60 / per_activation)
    assert result["step_bound"] == 0.0
    # Twice the peak: half the time; a board starved of bandwidth is held to it.
    assert orin.orin_estimate(measured, orin.Board("x", 20.0, 1e9))["minutes"] == pytest.approx(result["minutes"] / 2)
    starved = orin.orin_estimate(measured, orin.Board("y", 10.0, 1.0))
    assert starved["step_bound"] == 1.0 and starved["minutes"] > result["minutes"]
    figures = orin.estimate_figures(measured)
    assert [f.target for f in figures] == [30.0, None]  # the 15 W board is judged, the Super mode shown
    assert all(math.isfinite(f.value) and "M activations in 30 min" in f.note for f in figures)


def test_a_stage_and_its_cancel_run_through_a_real_appliance(appliance: Appliance) -> None:
    """The diagnostic job stands in for a stage: its first progress is seen, and the cancel run is
    cancelled after it advanced past its first progress report, long before its end."""
    from appliance.commands.bench.pipeline import Stage, cancel_stage, run_stage

    assert appliance.worker is not None
    pid = appliance.worker.pid
    stage = Stage("selftest")
    with httpx.Client(base_url=appliance.url, timeout=30) as client:
        job = run_stage(client, pid, stage, "/api/jobs/selftest", {"steps": 3, "delay_ms": 20})
        assert job["status"] == "completed" and stage.job == job
        assert stage.first_progress_s is not None and stage.rss_peak_mb and stage.rss_peak_mb > 0
        cancel_stage(client, pid, stage, "/api/jobs/selftest", {"steps": 10_000, "delay_ms": 50})
        assert stage.errors == [] and stage.cancel_s is not None
        step = int(stage.cancel_note.split("step ")[1].split("/")[0])
        assert step >= 2  # not at its first report: the loop was under way
        cancelled = client.get("/api/jobs", params={"status": "cancelled"}).json()["data"]
        assert len(cancelled) == 1 and cancelled[0]["progress"] < 0.1  # fewer than 1,000 of its 10,000 steps

        # A job that ends before it can be cancelled is an error of the cancel figure, not a latency.
        quick = Stage("selftest")
        cancel_stage(client, pid, quick, "/api/jobs/selftest", {"steps": 1, "delay_ms": 0})
        assert quick.cancel_s is None and quick.errors and "not cancelled" in quick.errors[0]
