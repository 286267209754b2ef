"""One normalised monitoring sample, whatever the source (tegrastats, jtop, /proc + NVML).

Every field is optional because boards and sources differ: a value that a source cannot see is
None (or absent from a mapping), never a made-up number. Units are in the names.
"""

from __future__ import annotations

from typing import Literal

import msgspec

Source = Literal["tegrastats", "jtop", "proc"]


class CpuCore(msgspec.Struct, omit_defaults=True):
    index: int
    online: bool  # no default, so it is always in the JSON (an offline core has no load)
    load_pct: float | None = None
    freq_mhz: int | None = None


class PowerRail(msgspec.Struct, omit_defaults=True):
    name: str  # as the board names it: VDD_IN, POM_5V_IN, VDD_CPU_GPU_CV, ...
    current_mw: float
    average_mw: float | None = None


class Sample(msgspec.Struct, omit_defaults=True):
    timestamp: float  # unix seconds when the sample was taken
    source: Source
    cpu: list[CpuCore] = []
    cpu_load_pct: float | None = None  # mean over online cores
    gpu_load_pct: float | None = None  # GR3D on a Jetson, utilization.gpu from NVML
    gpu_freq_mhz: int | None = None
    ram_used_mb: float | None = None  # unified memory on a Jetson: this is also the GPU's memory
    ram_total_mb: float | None = None
    swap_used_mb: float | None = None
    swap_total_mb: float | None = None
    gpu_mem_used_mb: float | None = None  # discrete GPUs only (NVML)
    gpu_mem_total_mb: float | None = None
    emc_load_pct: float | None = None  # external memory controller (Jetson)
    emc_freq_mhz: int | None = None
    temperatures_c: dict[str, float] = {}  # sensor name -> degrees C; absent sensors (-256C) omitted
    power: list[PowerRail] = []
    fan_pct: float | None = None
    process_rss_mb: dict[str, float] = {}  # "api", "worker" -> resident memory in MB
