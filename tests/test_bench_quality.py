"""``mistudio bench quality``'s runs and the figures from the trainings it ran: every architecture
trains with its defaults, each line is labelled with its own setting (the k architectures and JumpReLU
have no L1 coefficient), only the defaults of the architectures with a λ (the L1 ones and gated) are
judged, and a run without a CE gap still prints."""

from __future__ import annotations

from typing import Any

from appliance.commands.bench.quality import TARGET_EV, _figures, _runs


def _training(ev: float | None, ce: float | None, **hp: Any) -> dict[str, Any]:
    defaults = {"k": 32, "l1_coefficient": None, "l0_coefficient": 1.0, "learning_rate": 3e-4}
    evaluation = {"explained_variance": ev, "l0": 30.0, "dead_latents": 2, "ce_loss_recovered": ce}
    return {"evaluation": evaluation, "config": {"hyperparameters": {**defaults, **hp}}}


def test_figures_label_each_architecture_and_judge_only_the_l1_defaults() -> None:
    results = [
        ("topk", {}, _training(0.8, 0.95)),
        ("jumprelu", {}, _training(0.7, 0.9)),
        ("batchtopk", {}, _training(0.75, 0.96)),
        ("matryoshka_batchtopk", {}, _training(0.74, 0.96)),
        ("gated", {}, _training(0.84, 0.97, l1_coefficient=4.0, learning_rate=2e-3)),
        ("sparse", {}, _training(0.77, None, l1_coefficient=2.0, learning_rate=2e-3)),
        ("sparse", {"l1_coefficient": 4.0}, _training(0.6, 0.8, l1_coefficient=4.0, learning_rate=2e-3)),
    ]
    figures = {f.name: f for f in _figures(results, d_model=128)}
    assert set(figures) == {
        "topk k=32, lr 0.0003 (default): explained variance",
        "jumprelu L0 coef 1, lr 0.0003 (default): explained variance",
        "batchtopk k=32, lr 0.0003 (default): explained variance",
        "matryoshka_batchtopk k=32, lr 0.0003 (default): explained variance",
        "gated λ=4, lr 0.002 (default): explained variance",
        "gated (default): L0",
        "sparse λ=2, lr 0.002 (default): explained variance",
        "sparse (default): L0",
        "sparse λ=4, lr 0.002: explained variance",
    }
    judged = {name for name, f in figures.items() if f.target is not None}
    assert judged == {
        "sparse λ=2, lr 0.002 (default): explained variance",
        "sparse (default): L0",
        "gated λ=4, lr 0.002 (default): explained variance",
        "gated (default): L0",
    }
    assert figures["sparse λ=2, lr 0.002 (default): explained variance"].target == TARGET_EV
    assert figures["sparse (default): L0"].target == 64
    assert "CE recovered n/a" in figures["sparse λ=2, lr 0.002 (default): explained variance"].note


def test_every_architecture_runs_with_its_defaults_and_the_l1_ones_also_beside_them() -> None:
    from appliance.contracts.hyperparameters import ARCHITECTURE_DEFAULTS

    runs = _runs()
    assert {kind for kind, named in runs if not named} == set(ARCHITECTURE_DEFAULTS)
    swept = {kind: sorted(named["l1_coefficient"] for k, named in runs if named and k == kind) for kind, _ in runs}
    assert swept["sparse"] == [1.0, 4.0] and swept["skip"] == [1.25, 5.0] and swept["transcoder"] == [0.5, 2.0]
    assert all(not swept[kind] for kind in ("topk", "batchtopk", "matryoshka_batchtopk", "jumprelu", "gated"))
