"""What this device is: a Jetson (and which), another Linux box with an NVIDIA GPU, or plain CPU.

Detection reads files only (device tree, /etc/nv_tegra_release, NVML when present) so the API process
can answer without importing torch. ``host_root`` lets containers and tests point at another tree.
"""

from __future__ import annotations

import platform as _platform
import re
import shutil
import socket
from functools import lru_cache
from pathlib import Path
from typing import Literal

import msgspec

from appliance.device.procfs import meminfo_kb, read_text

PlatformKind = Literal["jetson", "nvidia", "cpu"]

# Tegra SoC ids in the device tree's "compatible" list -> the family a user knows.
_SOCS = {
    "tegra234": "Orin (T234)",
    "tegra194": "Xavier (T194)",
    "tegra186": "TX2 (T186)",
    "tegra210": "TX1 / Nano (T210)",
}
# L4T release -> JetPack, for the releases users meet (NVIDIA's JetPack archive).
_JETPACK = {
    "36.4": "6.1 / 6.2",
    "36.3": "6.0",
    "36.2": "6.0 DP",
    "35.6": "5.1.4",
    "35.5": "5.1.3",
    "35.4": "5.1.2",
    "35.3": "5.1.1",
    "35.2": "5.1",
    "35.1": "5.0.2",
    "34.1": "5.0",
    "32.7": "4.6.x",
    "32.6": "4.6",
    "32.5": "4.5",
    "32.4": "4.4",
}


class PlatformInfo(msgspec.Struct):
    kind: PlatformKind
    device_name: str  # what the header shows: the board's model string, else the GPU, else the host name
    board: str | None
    soc: str | None
    l4t: str | None
    jetpack: str | None
    gpu_name: str | None
    cuda_available: bool  # a CUDA-capable GPU and driver are present (torch's view comes from the worker)
    unified_memory: bool
    total_memory_mb: float
    machine: str


def _device_tree(root: Path, name: str) -> str | None:
    text = read_text(root / "proc/device-tree" / name)
    return text.replace("\x00", "\n").strip() if text else None


def parse_l4t(text: str) -> str | None:
    """``# R36 (release), REVISION: 3.0, GCID: ...`` -> ``36.3.0``."""
    match = re.search(r"R(\d+)\s*\(release\),\s*REVISION:\s*([\d.]+)", text)
    return f"{match.group(1)}.{match.group(2)}" if match else None


def jetpack_for(l4t: str | None) -> str | None:
    if not l4t:
        return None
    major_minor = ".".join(l4t.split(".")[:2])
    return _JETPACK.get(major_minor)


def _nvml_gpu() -> str | None:
    try:
        import pynvml  # nvidia-ml-py; only on machines with an NVIDIA driver
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
        try:
            if pynvml.nvmlDeviceGetCount() < 1:
                return None
            name = pynvml.nvmlDeviceGetName(pynvml.nvmlDeviceGetHandleByIndex(0))
            return name.decode() if isinstance(name, bytes) else name
        finally:
            pynvml.nvmlShutdown()
    except Exception:  # noqa: BLE001 - no driver, no GPU: simply not an NVIDIA box
        return None


def detect(root: Path = Path("/")) -> PlatformInfo:
    total_mb = meminfo_kb(root).get("MemTotal", 0) / 1024
    model = _device_tree(root, "model")
    release = read_text(root / "etc/nv_tegra_release")
    if (model and "jetson" in model.lower()) or release is not None:
        compatible = _device_tree(root, "compatible") or ""
        soc_id = next((s.split(",")[-1] for s in compatible.split() if "tegra" in s), None)
        l4t = parse_l4t(release or "")
        board = model or "NVIDIA Jetson"
        gpu_nodes = any(
            (root / p).exists() for p in ("dev/nvhost-gpu", "dev/nvgpu", "dev/nvhost-ctrl-gpu", "usr/local/cuda")
        )
        return PlatformInfo(
            kind="jetson",
            device_name=board,
            board=board,
            soc=_SOCS.get(soc_id or "", soc_id),
            l4t=l4t,
            jetpack=jetpack_for(l4t),
            gpu_name=_SOCS.get(soc_id or "", None),
            cuda_available=gpu_nodes,
            unified_memory=True,
            total_memory_mb=round(total_mb, 1),
            machine=_platform.machine(),
        )
    gpu = _nvml_gpu() if root == Path("/") else None
    if gpu is None and root == Path("/") and shutil.which("nvidia-smi"):
        gpu = "NVIDIA GPU"
    hostname = socket.gethostname()
    return PlatformInfo(
        kind="nvidia" if gpu else "cpu",
        device_name=f"{hostname} ({gpu})" if gpu else hostname,
        board=None,
        soc=None,
        l4t=None,
        jetpack=None,
        gpu_name=gpu or None,
        cuda_available=bool(gpu),
        unified_memory=False,
        total_memory_mb=round(total_mb, 1),
        machine=_platform.machine(),
    )


@lru_cache(maxsize=4)
def detect_cached(root: Path) -> PlatformInfo:
    return detect(root)
