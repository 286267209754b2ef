"""Which precisions this device can load a model in, and why not; light enough for the API (no torch).

fp32 always; bf16 and fp16 everywhere torch runs them (on a CPU fp16 matmuls are slow, so bf16 is
preferred there); q8 as torch's dynamic int8 quantization of linear layers on CPU, or bitsandbytes
on CUDA; q4 only with bitsandbytes on CUDA.
"""

from __future__ import annotations

import importlib.util

import msgspec

from appliance.device.platform import PlatformInfo
from appliance.errors import ValidationError

PRECISIONS = ("fp32", "fp16", "bf16", "q8", "q4")
BYTES_PER_PARAM = {"fp32": 4.0, "fp16": 2.0, "bf16": 2.0, "q8": 1.0, "q4": 0.5}


class PrecisionSupport(msgspec.Struct):
    name: str
    supported: bool
    reason: str
    bytes_per_param: float


def _has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def capabilities(platform: PlatformInfo) -> list[PrecisionSupport]:
    cuda = platform.cuda_available
    bnb = cuda and _has("bitsandbytes")
    table: dict[str, tuple[bool, str]] = {
        "fp32": (True, "full precision"),
        "fp16": (True, "half precision on the GPU" if cuda else "works on CPU but matmuls are slow there; prefer bf16"),
        "bf16": (True, "bfloat16 (Ampere GPUs, Jetson Orin, and CPUs)"),
        "q8": (
            bool(bnb) or not cuda,
            "int8 with bitsandbytes"
            if bnb
            else "int8 dynamic quantization of linear layers (CPU)"
            if not cuda
            else "needs the bitsandbytes package for int8 on CUDA",
        ),
        "q4": (bool(bnb), "4-bit NF4 with bitsandbytes" if bnb else "needs a CUDA GPU and the bitsandbytes package"),
    }
    return [PrecisionSupport(name, ok, why, BYTES_PER_PARAM[name]) for name, (ok, why) in table.items()]


def check(platform: PlatformInfo, precision: str) -> None:
    """A precision this device cannot load is refused when it is asked for, not when the job runs."""
    for item in capabilities(platform):
        if item.name == precision and not item.supported:
            raise ValidationError(
                f"Precision {precision} is not available on this device: {item.reason}", details={"field": "precision"}
            )


def memory_mb(parameters: int, precision: str) -> float:
    """Weights only, plus 20% for buffers and activations at inference (a planning figure)."""
    return parameters * BYTES_PER_PARAM[precision] * 1.2 / 2**20


def estimates(parameters: int | None) -> dict[str, float] | None:
    """The planning figure per precision, for a model whose size is known."""
    return {p: round(memory_mb(parameters, p), 1) for p in PRECISIONS} if parameters else None
