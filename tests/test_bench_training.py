"""``mistudio bench training`` side by side with SAELens and sparsify: the peers' steps start from our
weights and compute our losses (so the timings compare the same work), and every architecture both
libraries have gets a judged ratio. Tiny shapes: what is checked is the wiring, never a speed."""

from __future__ import annotations

import pytest
import torch

from appliance.commands.bench import training
from appliance.commands.bench.training_peers import SAELENS_NAMES, saelens_step, sparsify_step
from appliance.pipeline.sae import CLASSES

torch.set_num_threads(1)
D_IN, D_SAE, BATCH = 16, 64, 128
PAIRED = [name for name in SAELENS_NAMES if name in CLASSES]


@pytest.mark.parametrize("arch", PAIRED)
def test_saelens_step_starts_from_our_weights_and_computes_our_loss(arch: str) -> None:
    torch.manual_seed(0)
    x = torch.randn(BATCH, D_IN)
    sae, _ = training._ours(arch, D_IN, D_SAE, x)
    peer = saelens_step(sae, x)
    with torch.no_grad():  # with its L0 term, which our step leaves out of the value when it logs nothing
        mine = float(sae.forward_train(x, stats=True).loss)
    assert float(peer()) == pytest.approx(mine, rel=1e-4)  # type: ignore[arg-type]


def test_sparsify_step_starts_from_our_weights_and_reconstructs_as_we_do() -> None:
    torch.manual_seed(0)
    x = torch.randn(BATCH, D_IN)
    sae, ours = training._ours("topk", D_IN, D_SAE, x)
    peer = sparsify_step(sae, x)
    mse = float(ours().mse.detach())  # type: ignore[attr-defined]
    fvu = float(peer())  # type: ignore[arg-type]
    # sparsify's loss is the fraction of variance unexplained: the same squared error over x's variance.
    assert fvu == pytest.approx(mse * BATCH / float((x - x.mean(0)).pow(2).sum()), rel=1e-4)


def test_every_shared_architecture_is_judged_against_saelens_and_the_k_ones_against_sparsify(monkeypatch) -> None:
    monkeypatch.setattr(training, "ROUNDS", 1)
    figures = {f.name: f for f in training._shape(D_IN, D_SAE, BATCH, list(training.ARCHITECTURES), 1, True, True)}
    at = f"{D_IN}x{D_SAE}"
    for arch in PAIRED:
        versus = figures[f"{arch} / SAELens {SAELENS_NAMES[arch]} {at}"]
        assert versus.target == training.TARGET_VS_SAELENS and versus.higher_is_better and versus.value > 0
    for arch in ("topk", "batchtopk"):
        if arch in CLASSES:
            assert figures[f"{arch} / sparsify TopK {at}"].target == training.TARGET_VS_SPARSIFY
    assert not any("SAELens" in name for name in figures if name.startswith(("skip ", "transcoder ")))
    assert figures[f"bare matmuls {at}"].value > 0
