"""``mistudio bench training``: activations/s of one SAE training step per architecture, next to the
bare matmuls every step needs and, when they are installed, to SAELens' and sparsify's steps for the same
architecture, all timed in the same process on the same tensors.

The bare figure is the five matmuls of a dense SAE step: encoder (x @ W_enc), decoder (z @ W_dec),
and the gradients (dz = g @ W_dec^T, dW_dec = z^T @ g, dW_enc = x^T @ dz). A step also runs the
activation, the loss, Adam and the decoder constraint; the ratio says how close to the matmul floor
the implementation gets. TopK decodes sparsely, so it can beat the dense floor.

Each architecture is a group of steps (bare, ours, SAELens', sparsify's for the TopK ones) timed in
alternating rounds: every round runs each step ``repeats`` times in turn, and each step keeps its best
time, so load that comes and goes on the machine hits all of them alike. The peers start from our
weights (see training_peers), so both sides select the same latents. With one torch thread every step
runs on this thread, and the clock is the process's CPU time: on a machine shared with other work, the
time the step was preempted is not the step's (with more threads it is the wall clock).
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from appliance.commands.bench.harness import Figure, finish, opening, progress
from appliance.commands.bench.training_peers import (
    SAELENS_NAMES,
    saelens_step,
    saelens_version,
    sparsify_step,
    sparsify_version,
)

if TYPE_CHECKING:
    import torch

    from appliance.contracts.hyperparameters import EncoderType
    from appliance.pipeline.sae import SAE

SHAPES = ((512, 4096, 4096), (768, 768 * 16, 4096))
ARCHITECTURES: tuple[EncoderType, ...] = (
    "sparse",
    "topk",
    "jumprelu",
    "skip",
    "transcoder",
    "gated",
    "batchtopk",
    "matryoshka_batchtopk",
)
ROUNDS = 3
# Our step against the bare matmuls (the dense architectures; the k ones decode sparsely, see above).
TARGET_VS_BARE = 0.8
DENSE = ("sparse", "jumprelu", "skip", "transcoder")
TARGET_VS_SAELENS = 1.2  # ours at least 1.2x SAELens' step for the same architecture
TARGET_VS_SPARSIFY = 1.0  # topk and batchtopk at least as fast as sparsify's TopK
VS_SPARSIFY = ("topk", "batchtopk")
K = 32


def alternate(
    steps: dict[str, Callable[[], object]], rounds: int, repeats: int, clock: Callable[[], float] = time.perf_counter
) -> dict[str, float]:
    """Each step's best time in seconds over ``rounds`` rounds of ``repeats`` calls, the steps taking turns."""
    for step in steps.values():
        step()  # warm-up: allocator and kernels
    best = dict.fromkeys(steps, math.inf)
    for _ in range(rounds):
        for name, step in steps.items():
            for _ in range(repeats):
                began = clock()
                step()
                best[name] = min(best[name], clock() - began)
    return best


def run(args: argparse.Namespace) -> int:
    import torch

    from appliance.memory.admission import heap_reuse
    from appliance.pipeline.sae import CLASSES

    threads, repeats = opening("training", args)
    torch.set_num_threads(threads)
    saelens, sparsify = saelens_version(), sparsify_version()
    clock = "process CPU time" if threads == 1 else "wall clock"
    print(f"torch {torch.__version__}, {threads} thread(s), best of {ROUNDS} rounds x {repeats}, {clock}")
    print(f"SAELens {saelens or 'not installed'}, sparsify {sparsify or 'not installed'}")
    built = [name for name in ARCHITECTURES if name in CLASSES]
    figures = []
    with heap_reuse():  # as the training job runs
        for shape in SHAPES:
            figures += _shape(*shape, built, repeats, saelens is not None, sparsify is not None, threads == 1)
    settings = {
        "threads": threads,
        "repeats": repeats,
        "rounds": ROUNDS,
        "clock": clock,
        "torch": torch.__version__,
        "saelens": saelens,
        "sparsify": sparsify,
    }
    return finish("training", figures, settings=settings)


def _ours(name: EncoderType, d_in: int, d_sae: int, x: torch.Tensor) -> tuple[SAE, Callable[[], object]]:

    from appliance.contracts.hyperparameters import Hyperparameters
    from appliance.pipeline.sae import SAEConfig, build
    from appliance.pipeline.sae.step import train_step
    from appliance.pipeline.sae.training.loop import make_optimizer

    # The training defaults, but AuxK off on both sides: in a few steps no latent is dead anyway.
    sae = build(SAEConfig(name, d_in, d_sae, k=K, aux_k_coefficient=0.0))
    sae.init_b_dec(x)
    optimizer = make_optimizer(sae, Hyperparameters())  # the training job's
    # As the training loop runs most steps: statistics (L0) only on logged steps.
    return sae, lambda: train_step(sae, optimizer, x, stats=False)


def _shape(
    d_in: int,
    d_sae: int,
    batch: int,
    names: list[EncoderType],
    repeats: int,
    saelens: bool,
    sparsify: bool,
    cpu_clock: bool = False,
) -> list[Figure]:
    import torch

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

    bare_rates = []
    rows: list[Figure] = []
    for name in names:
        progress(f"{name} at d_in={d_in}, d_sae={d_sae}, batch={batch}")
        sae, ours = _ours(name, d_in, d_sae, x)
        steps = {"bare": bare, "ours": ours}
        if saelens and name in SAELENS_NAMES:
            steps["saelens"] = saelens_step(sae, x)
        if sparsify and name in VS_SPARSIFY:
            steps["sparsify"] = sparsify_step(sae, x)
        clock = time.process_time if cpu_clock else time.perf_counter
        rate = {step: batch / seconds for step, seconds in alternate(steps, ROUNDS, repeats, clock).items()}
        del steps, sae
        bare_rates.append(rate["bare"])
        rows += _figures(name, d_in, d_sae, rate)
    bare_rate = max(bare_rates, default=math.nan)
    bare_figure = Figure(
        f"bare matmuls {d_in}x{d_sae}", bare_rate, "act/s", digits=0, note="enc, dec and their gradients (best group)"
    )
    return [bare_figure, *rows]


def _figures(name: str, d_in: int, d_sae: int, rate: dict[str, float]) -> list[Figure]:
    """Our step against the bare matmuls timed in its own group, and against each peer's step."""
    at = f"{d_in}x{d_sae}"
    ours = rate["ours"]
    figures = [
        Figure(
            f"{name} step / bare {at}",
            ours / rate["bare"],
            "x",
            digits=2,
            target=TARGET_VS_BARE if name in DENSE else None,
            higher_is_better=True,
            note=f"{ours:,.0f} act/s",
        )
    ]
    if "saelens" in rate:
        peer = rate["saelens"]
        figures.append(
            Figure(
                f"{name} / SAELens {SAELENS_NAMES[name]} {at}",
                ours / peer,
                "x",
                digits=2,
                target=TARGET_VS_SAELENS,
                higher_is_better=True,
                note=f"SAELens {peer:,.0f} act/s, {peer / rate['bare']:.2f}x bare",
            )
        )
    if "sparsify" in rate:
        peer = rate["sparsify"]
        figures.append(
            Figure(
                f"{name} / sparsify TopK {at}",
                ours / peer,
                "x",
                digits=2,
                target=TARGET_VS_SPARSIFY,
                higher_is_better=True,
                note=f"sparsify {peer:,.0f} act/s, {peer / rate['bare']:.2f}x bare",
            )
        )
    return figures
