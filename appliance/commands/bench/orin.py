"""The Orin Nano estimate of ``mistudio bench pipeline``: how long the appliance's default SAE on
GPT-2-small would train on a Jetson Orin Nano 8 GB, from rates measured on another GPU and the board's
published figures. Every assumption is a named number here, and the README states them too.

No torch here: the estimate is arithmetic, testable without a GPU.
"""

from __future__ import annotations

from dataclasses import dataclass

from appliance.commands.bench.harness import Figure
from appliance.contracts.hyperparameters import Hyperparameters


@dataclass(frozen=True)
class Board:
    name: str
    dense_tflops: float  # fp16/bf16 on the tensor cores, dense
    bandwidth_gbs: float


# NVIDIA's published figures for the Jetson Orin Nano 8 GB module (datasheet): an Ampere GPU with 1,024
# CUDA cores and 32 tensor cores at up to 625 MHz, 40 INT8 TOPS (sparse), 68 GB/s LPDDR5 shared with the
# CPU; JetPack 6.1's "Super" mode (25 W) raises them to 1,020 MHz, 67 TOPS and 102 GB/s. On Ampere the dense
# fp16/bf16 tensor rate is half the dense INT8 rate, itself half the sparse one: a quarter of the TOPS.
ORIN_NANO = Board("Orin Nano 8 GB, 15 W", 40 / 4, 68)
ORIN_NANO_SUPER = Board("Orin Nano 8 GB Super, 25 W", 67 / 4, 102)
# Assumptions of the estimate, each a number the README states too:
MATMUL_SHARE = 0.7  # of its dense peak, what a large bf16 matmul reaches on the board
STEP_BYTES_PER_PARAMETER = 48  # fp32 weights read 4x, gradient written and read, Adam's read and write: 12 x 4 B
GPT2_SMALL = dict(layers=12, width=768, layer=6, context=128)
_DEFAULT = Hyperparameters()  # the appliance's default training is what the estimate trains
ESTIMATE_STEPS, ESTIMATE_BATCH, ESTIMATE_EXPANSION = (
    _DEFAULT.total_steps,
    _DEFAULT.batch_size,
    _DEFAULT.expansion_factor,
)
TARGET_MINUTES = 30.0


@dataclass(frozen=True)
class Measured:
    """Rates measured on this GPU, and the shapes they were measured at."""

    forward_tok_s: float  # the model up to the SAE's layer (the extraction floor)
    step_act_s: float  # the training job's steps
    matmul_tflops: float  # one large bf16 matmul
    layers_run: int
    width: int
    context: int
    d_sae: int


def forward_flops(layers_run: int, width: int, context: int) -> float:
    """FLOPs per token of ``layers_run`` GPT-2 blocks: 2 x 12 width^2 of weights, and attention over
    half the context on average (2 x 2 x context/2 x width)."""
    return layers_run * (24 * width**2 + 2 * context * width)


def step_flops(d_in: int, d_sae: int) -> float:
    """FLOPs per activation of a dense SAE step: five matmuls of 2 d_in d_sae each."""
    return 10 * d_in * d_sae


def orin_estimate(measured: Measured, board: Board, tokens: int | None = None) -> dict[str, float]:
    """Minutes to train the appliance's default SAE (8x, 2,000 steps of 1,024 activations streamed from
    GPT-2-small's layer 6) on ``board``, and the activations it trains in TARGET_MINUTES.

    Each part keeps on the board the share of the matmul rate it reached here (the forward's and the
    step's FLOPs at the measured rates over this GPU's measured bf16 matmul rate), applied to the board's
    published peak times MATMUL_SHARE; the step is also held to the board's memory bandwidth
    (STEP_BYTES_PER_PARAMETER per SAE parameter per step). The forward and the step run one after the
    other (no overlap). Not modelled: the board's slower CPU cores (Python and kernel launches per step
    weigh more there), its clocks under thermal limits, loading the model and the evaluation."""
    peak = measured.matmul_tflops * 1e12
    forward_share = measured.forward_tok_s * forward_flops(measured.layers_run, measured.width, measured.context) / peak
    step_share = measured.step_act_s * step_flops(measured.width, measured.d_sae) / peak
    width, layers_run, context = GPT2_SMALL["width"], GPT2_SMALL["layer"] + 1, GPT2_SMALL["context"]
    d_sae = ESTIMATE_EXPANSION * width
    board_flops = board.dense_tflops * 1e12 * MATMUL_SHARE
    forward = forward_share * board_flops / forward_flops(layers_run, width, context)
    step_compute = step_share * board_flops / step_flops(width, d_sae)
    step_memory = board.bandwidth_gbs * 1e9 * ESTIMATE_BATCH / (STEP_BYTES_PER_PARAMETER * 2 * width * d_sae)
    step = min(step_compute, step_memory)
    per_activation = 1 / forward + 1 / step
    total = tokens if tokens is not None else ESTIMATE_STEPS * ESTIMATE_BATCH
    return {
        "minutes": total * per_activation / 60,
        "activations_in_target": TARGET_MINUTES * 60 / per_activation,
        "forward_tok_s": forward,
        "step_act_s": step,
        "step_bound": 0.0 if step_compute <= step_memory else 1.0,  # 1: held by memory bandwidth
        "forward_share": forward_share,
        "step_share": step_share,
    }


def estimate_figures(measured: Measured) -> list[Figure]:
    figures = []
    for board in (ORIN_NANO, ORIN_NANO_SUPER):
        result = orin_estimate(measured, board)
        bound = "memory bandwidth" if result["step_bound"] else "compute"
        figures.append(
            Figure(
                f"estimate: default SAE on GPT-2-small, {board.name}",
                result["minutes"],
                "min",
                target=TARGET_MINUTES if board is ORIN_NANO else None,
                note=(
                    f"{ESTIMATE_STEPS:,} x {ESTIMATE_BATCH:,} activations, {ESTIMATE_EXPANSION}x; forward "
                    f"{result['forward_tok_s']:,.0f} tok/s, step {result['step_act_s']:,.0f} act/s ({bound} bound); "
                    f"{result['activations_in_target'] / 1e6:,.1f} M activations in {TARGET_MINUTES:g} min"
                ),
            )
        )
    return figures
