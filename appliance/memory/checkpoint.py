"""What a model's safetensors checkpoint holds, read from its headers without torch (the API plans with it
too): how many values of which dtype, and so what loading it at a precision costs.

A safetensors file starts with an 8-byte little-endian header length and a JSON header that gives each
tensor's dtype and shape; nothing else is read.
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Bytes per value of each safetensors dtype.
WIDTHS = {
    "F64": 8, "I64": 8, "U64": 8, "F32": 4, "I32": 4, "U32": 4, "F16": 2, "BF16": 2, "I16": 2, "U16": 2,
    "I8": 1, "U8": 1, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1,
}  # fmt: skip
# The safetensors dtype of each precision a model loads at without quantizing.
STORED_AS = {"fp32": "F32", "fp16": "F16", "bf16": "BF16"}
# transformers 5 materializes up to this many tensors at once while it loads (core_model_loading.GLOBAL_WORKERS).
LOADER_THREADS = 4
MAX_HEADER = 100 * 2**20


@dataclass(frozen=True)
class Checkpoint:
    # (safetensors dtype, number of values) per tensor
    tensors: tuple[tuple[str, int], ...]

    @property
    def parameters(self) -> int:
        return sum(count for _, count in self.tensors)

    @property
    def float_dtypes(self) -> set[str]:
        return {dtype for dtype, _ in self.tensors if dtype.startswith(("F", "BF"))}

    def converts_to(self, precision: str) -> bool:
        """Whether loading at ``precision`` changes the stored values' dtype (quantizing counts)."""
        return self.float_dtypes != {STORED_AS.get(precision, "")}

    def in_flight_bytes(self) -> int:
        """The most the loader holds of the file beside the converted weights: its largest tensors as stored,
        one per loader thread, each freed once converted (appliance.pipeline.models.loading)."""
        sizes = sorted((count * WIDTHS.get(dtype, 4) for dtype, count in self.tensors), reverse=True)
        return sum(sizes[:LOADER_THREADS])


def _header(file: Path) -> dict[str, dict[str, Any]]:
    with open(file, "rb") as handle:
        (length,) = struct.unpack("<Q", handle.read(8))
        if length > MAX_HEADER:
            raise ValueError(f"{file.name}: a {length}-byte header is not a safetensors header")
        header = json.loads(handle.read(length))
    header.pop("__metadata__", None)
    return header


def safetensors_files(folder: str | Path) -> list[Path]:
    """The folder's safetensors checkpoint (every shard of a sharded one); empty for other formats."""
    folder = Path(folder)
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        return [folder / name for name in sorted(set(json.loads(index.read_text())["weight_map"].values()))]
    single = folder / "model.safetensors"
    return [single] if single.is_file() else []


def read_checkpoint(folder: str | Path) -> Checkpoint | None:
    """The checkpoint in ``folder``; None when it has no readable safetensors."""
    try:
        files = safetensors_files(folder)
        tensors = [
            (str(info["dtype"]), math.prod(int(n) for n in info["shape"]))
            for file in files
            for info in _header(file).values()
        ]
    except (OSError, ValueError, KeyError, TypeError, struct.error):
        return None
    return Checkpoint(tuple(tensors)) if tensors else None
