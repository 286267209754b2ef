"""``mistudio bench training``: activations/s of one SAE training step per architecture, next to the
bare matmuls every step needs, timed in the same run on the same tensors.

The bare figure is the five matmuls of a dense SAE step: encoder (x @ W_enc), decoder (z @ W_dec),
and the gradients (dz = g @ W_dec^T, dW_dec = z^T @ g, dW_enc = x^T @ dz). A step also runs the
activation, the loss, Adam and the decoder constraint; the ratio says how close to the matmul floor
the implementation gets. TopK decodes sparsely, so it can beat the dense floor.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from appliance.commands.bench.harness import Figure, finish, opening, progress

if TYPE_CHECKING:
    from appliance.contracts.hyperparameters import EncoderType

SHAPES = ((512, 4096, 4096), (768, 768 * 16, 4096))
ARCHITECTURES: tuple[EncoderType, ...] = ("sparse", "topk", "jumprelu", "skip", "transcoder")


def _best(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up: allocator and kernels
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        fn()
        times.append(time.perf_counter() - began)
    return min(times)


def run(args: argparse.Namespace) -> int:
    import torch

    from appliance.memory.admission import heap_reuse

    threads, repeats = opening("training", args)
    torch.set_num_threads(threads)
    print(f"torch {torch.__version__}, {threads} thread(s), best of {repeats}")
    figures = []
    with heap_reuse():  # as the training job runs
        for shape in SHAPES:
            figures += _shape(*shape, repeats)
    return finish("training", figures, settings={"threads": threads, "repeats": repeats, "torch": torch.__version__})


def _shape(d_in: int, d_sae: int, batch: int, repeats: int) -> list[Figure]:
    import torch

    from appliance.pipeline.sae import SAEConfig, build
    from appliance.pipeline.sae.step import train_step

    figures = []
    torch.manual_seed(0)
    x = torch.randn(batch, d_in)
    W_enc, W_dec = torch.randn(d_in, d_sae) / d_in**0.5, torch.randn(d_sae, d_in) / d_sae**0.5
    g = torch.randn(batch, d_in)

    def bare() -> None:
        z = x @ W_enc
        _ = z @ W_dec
        dz = g @ W_dec.T
        _ = z.T @ g
        _ = x.T @ dz

    progress(f"bare matmuls at d_in={d_in}, d_sae={d_sae}, batch={batch}")
    bare_rate = batch / _best(bare, repeats)
    figures.append(
        Figure(f"bare matmuls {d_in}x{d_sae}", bare_rate, "act/s", digits=0, note="enc, dec and their gradients")
    )
    for name in ARCHITECTURES:
        # JumpReLU's backward pass gathers the pre-activations within half a bandwidth of their
        # threshold: these narrow values are the ones the recorded figures were measured with, kept so
        # the figures stay comparable now that SAEConfig's defaults are the training defaults.
        sae = build(
            SAEConfig(
                name, d_in, d_sae, k=32, aux_k_coefficient=0.0, jumprelu_init_threshold=0.001, jumprelu_bandwidth=0.001
            )
        )
        sae.init_b_dec(x)
        optimizer = torch.optim.Adam(sae.parameters(), lr=1e-4)
        progress(f"{name} step")
        # As the training loop runs most steps: statistics (L0) only on logged steps.
        rate = batch / _best(lambda: train_step(sae, optimizer, x, stats=False), repeats)
        target = 0.8 if name != "topk" else None
        figures.append(
            Figure(
                f"{name} step / bare",
                rate / bare_rate,
                "x",
                digits=2,
                target=target,
                higher_is_better=True,
                note=f"{rate:,.0f} act/s",
            )
        )
    return figures
