"""The k-architectures' steps pay for one dense encoder matmul, not two: the chosen latents' gradients reach
W_enc through a sparse product (appliance.pipeline.sae.sparse_grad). Counted, not timed: every dense matmul
the step runs is recorded with its shape."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from appliance.pipeline.sae import SAEConfig, build
from appliance.pipeline.sae.step import train_step

torch.set_num_threads(1)
BATCH, D_IN, D_SAE = 64, 16, 256
K_ARCHS = ["topk", "batchtopk", "matryoshka_batchtopk"]
MATMULS = {torch.ops.aten.mm.default, torch.ops.aten.addmm.default, torch.ops.aten.bmm.default}


class _EncoderSized(TorchDispatchMode):
    """Counts the dense matmuls as large as the encoder's (batch x d_in x d_sae multiply-adds)."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        if func in MATMULS:
            a, b = args[-2], args[-1]
            if a.layout == torch.strided and b.layout == torch.strided:
                if a.shape[-2] * a.shape[-1] * b.shape[-1] >= BATCH * D_IN * D_SAE:
                    self.count += 1
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("arch", K_ARCHS)
@pytest.mark.parametrize("dead", [False, True])
def test_k_step_runs_one_encoder_sized_matmul(arch: str, dead: bool) -> None:
    torch.manual_seed(0)
    sae = build(SAEConfig(arch, D_IN, D_SAE, k=4, aux_k_coefficient=1.0, dead_tokens=BATCH))
    optimizer = torch.optim.Adam(sae.parameters(), lr=1e-3)
    x = torch.randn(BATCH, D_IN)
    if dead:  # AuxK picks among the dead latents too: its gradient must stay sparse as well
        sae.tokens_since_fired[: D_SAE // 2] = BATCH
    with _EncoderSized() as counted:
        out = train_step(sae, optimizer, x)
    assert float(out.sparsity) > 0 if dead else float(out.sparsity) == 0
    # The forward encoder; the decoder is sparse (embedding_bag), and W_enc's gradient too.
    assert counted.count == 1


@pytest.mark.parametrize("arch", K_ARCHS)
def test_sparse_encoder_gradients_equal_autograds_dense_ones(arch: str) -> None:
    torch.manual_seed(0)
    sae = build(SAEConfig(arch, D_IN, D_SAE, k=4, aux_k_coefficient=1.0, dead_tokens=BATCH))
    with torch.no_grad():
        sae.b_dec.normal_(0, 0.1)
        sae.b_enc.normal_(0, 0.1)
    sae.tokens_since_fired[: D_SAE // 2] = BATCH
    x = torch.randn(BATCH, D_IN)
    sae.forward_train(x).loss.backward()
    sparse = {name: p.grad.clone() for name, p in sae.named_parameters()}
    sae.zero_grad()
    # The same loss with the dense pre-activations in the graph: pick() then differentiates a plain gather.
    from appliance.pipeline.sae import topk

    original = topk.TopKSAE.pick
    topk.TopKSAE.pick = lambda self, pre, x, tokens, latents: self.pre_activations(x)[tokens, latents]  # type: ignore[method-assign]
    try:
        sae.forward_train(x).loss.backward()
    finally:
        topk.TopKSAE.pick = original  # type: ignore[method-assign]
    for name, p in sae.named_parameters():
        assert torch.allclose(sparse[name], p.grad, atol=1e-5, rtol=1e-4), name
    assert sparse["W_enc"].abs().sum() > 0
