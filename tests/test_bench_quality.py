"""``mistudio bench quality``'s figures from the trainings it ran: every architecture's line is
labelled with its own setting (TopK and JumpReLU have no L1 coefficient), only the L1
architectures' defaults are judged, and a run without a CE gap still prints."""

from __future__ import annotations

from typing import Any

from appliance.commands.bench.quality import TARGET_EV, _figures


def _training(ev: float | None, ce: float | None, **hp: Any) -> dict[str, Any]:
    defaults = {"k": 32, "l1_coefficient": None, "l0_coefficient": 1.0, "learning_rate": 3e-4}
    evaluation = {"explained_variance": ev, "l0": 30.0, "dead_latents": 2, "ce_loss_recovered": ce}
    return {"evaluation": evaluation, "config": {"hyperparameters": {**defaults, **hp}}}


def test_figures_label_each_architecture_and_judge_only_the_l1_defaults() -> None:
    results = [
        ("topk", {}, _training(0.8, 0.95)),
        ("jumprelu", {}, _training(0.7, 0.9)),
        ("sparse", {}, _training(0.77, None, l1_coefficient=2.0, learning_rate=2e-3)),
        ("sparse", {"l1_coefficient": 4.0}, _training(0.6, 0.8, l1_coefficient=4.0, learning_rate=2e-3)),
    ]
    figures = {f.name: f for f in _figures(results, d_model=128)}
    assert set(figures) == {
        "topk k=32, lr 0.0003 (default): explained variance",
        "jumprelu L0 coef 1, lr 0.0003 (default): explained variance",
        "sparse λ=2, lr 0.002 (default): explained variance",
        "sparse (default): L0",
        "sparse λ=4, lr 0.002: explained variance",
    }
    judged = {name for name, f in figures.items() if f.target is not None}
    assert judged == {"sparse λ=2, lr 0.002 (default): explained variance", "sparse (default): L0"}
    assert figures["sparse λ=2, lr 0.002 (default): explained variance"].target == TARGET_EV
    assert figures["sparse (default): L0"].target == 64
    assert "CE recovered n/a" in figures["sparse λ=2, lr 0.002 (default): explained variance"].note
