"""Where samples come from. Choice: on a Jetson the jtop service when it is active,
else a ``tegrastats`` subprocess; elsewhere /proc, sysfs and NVML.

A source is started when someone listens and stopped when nobody does, so an idle appliance pays
nothing for monitoring.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from appliance.device.procfs import meminfo_kb, read_text
from appliance.device.sample import CpuCore, PowerRail, Sample

if TYPE_CHECKING:
    from appliance.device.tegrastats import TegrastatsReader

log = logging.getLogger("mistudio.monitor")


class MetricsSource(Protocol):
    name: str

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def sample(self) -> Sample | None: ...


def _memory_fields(sample: Sample, root: Path) -> None:
    info = meminfo_kb(root)
    if "MemTotal" in info:
        sample.ram_total_mb = round(info["MemTotal"] / 1024, 1)
        available = info.get("MemAvailable", info.get("MemFree", 0))
        sample.ram_used_mb = round((info["MemTotal"] - available) / 1024, 1)
    if info.get("SwapTotal"):
        sample.swap_total_mb = round(info["SwapTotal"] / 1024, 1)
        sample.swap_used_mb = round((info["SwapTotal"] - info.get("SwapFree", 0)) / 1024, 1)


class ProcSource:
    """/proc/stat deltas for CPU load, cpufreq, /proc/meminfo, thermal zones, and NVML for a GPU."""

    name = "proc"

    def __init__(self, root: Path = Path("/")):
        self.root = root
        self._last_stat: dict[int, tuple[int, int]] = {}
        # (the pynvml module, the GPU's handle): nvidia-ml-py is optional and ships no stubs
        self._nvml: tuple[Any, Any] | None = None

    def start(self) -> None:
        self._last_stat = self._read_stat()
        if self.root != Path("/"):  # NVML sees this machine's GPU, not the host mounted at root
            return
        try:
            import pynvml

            pynvml.nvmlInit()
            if pynvml.nvmlDeviceGetCount() > 0:
                self._nvml = (pynvml, pynvml.nvmlDeviceGetHandleByIndex(0))
        except Exception:  # noqa: BLE001 - no NVIDIA driver or no nvidia-ml-py: CPU-only sample
            self._nvml = None

    def stop(self) -> None:
        if self._nvml is not None:
            try:
                self._nvml[0].nvmlShutdown()
            except Exception:  # noqa: BLE001
                pass
            self._nvml = None

    def _read_stat(self) -> dict[int, tuple[int, int]]:
        """Per core: (busy jiffies, total jiffies)."""
        cores: dict[int, tuple[int, int]] = {}
        for line in (read_text(self.root / "proc/stat") or "").splitlines():
            if line.startswith("cpu") and line[3:4].isdigit():
                name, *fields = line.split()
                values = [int(v) for v in fields[:8]]
                idle = values[3] + (values[4] if len(values) > 4 else 0)
                cores[int(name[3:])] = (sum(values) - idle, sum(values))
        return cores

    def _cpu(self, sample: Sample) -> None:
        now = self._read_stat()
        cores = []
        for index in sorted(now):
            busy, total = now[index]
            load = None
            if index in self._last_stat:
                d_busy, d_total = busy - self._last_stat[index][0], total - self._last_stat[index][1]
                load = round(100.0 * d_busy / d_total, 1) if d_total > 0 else None
            freq_khz = read_text(self.root / f"sys/devices/system/cpu/cpu{index}/cpufreq/scaling_cur_freq")
            online_text = read_text(self.root / f"sys/devices/system/cpu/cpu{index}/online")
            cores.append(
                CpuCore(
                    index=index,
                    online=(online_text or "1").strip() != "0",
                    load_pct=load,
                    freq_mhz=int(freq_khz) // 1000 if freq_khz and freq_khz.strip().isdigit() else None,
                )
            )
        self._last_stat = now
        sample.cpu = cores
        loads = [c.load_pct for c in cores if c.online and c.load_pct is not None]
        sample.cpu_load_pct = round(sum(loads) / len(loads), 1) if loads else None

    def _thermal(self, sample: Sample) -> None:
        base = self.root / "sys/class/thermal"
        temps: dict[str, float] = {}
        for zone in sorted(base.glob("thermal_zone*")) if base.exists() else []:
            kind, temp = read_text(zone / "type"), read_text(zone / "temp")
            try:
                value = int((temp or "").strip()) / 1000
            except ValueError:
                continue
            if kind and -50 < value < 200:  # -256 and friends mean "no sensor"
                temps[kind.strip()] = round(value, 3)
        sample.temperatures_c = temps

    def _gpu(self, sample: Sample) -> None:
        if self._nvml is None:
            return
        nvml, handle = self._nvml
        try:
            util = nvml.nvmlDeviceGetUtilizationRates(handle)
            mem = nvml.nvmlDeviceGetMemoryInfo(handle)
            sample.gpu_load_pct = float(util.gpu)
            sample.gpu_mem_used_mb = round(mem.used / 2**20, 1)
            sample.gpu_mem_total_mb = round(mem.total / 2**20, 1)
            sample.gpu_freq_mhz = int(nvml.nvmlDeviceGetClockInfo(handle, nvml.NVML_CLOCK_GRAPHICS))
            sample.temperatures_c["GPU"] = float(nvml.nvmlDeviceGetTemperature(handle, nvml.NVML_TEMPERATURE_GPU))
            sample.power = [PowerRail(name="GPU", current_mw=float(nvml.nvmlDeviceGetPowerUsage(handle)))]
        except Exception:  # noqa: BLE001 - a GPU reset or a driver hiccup must not break monitoring
            log.debug("NVML read failed", exc_info=True)

    def sample(self) -> Sample:
        sample = Sample(timestamp=time.time(), source="proc")
        self._cpu(sample)
        _memory_fields(sample, self.root)
        self._thermal(sample)
        self._gpu(sample)
        return sample


class TegrastatsSource:
    """A ``tegrastats --interval`` subprocess, parsed line by line (every board's format)."""

    name = "tegrastats"

    def __init__(self, path: str, interval_s: float):
        self.path = path
        self.interval_s = interval_s
        self._reader: TegrastatsReader | None = None

    def start(self) -> None:
        from appliance.device.tegrastats import TegrastatsReader

        self._reader = TegrastatsReader(path=self.path, interval_ms=max(100, int(self.interval_s * 1000)))
        self._reader.start()

    def stop(self) -> None:
        if self._reader is not None:
            self._reader.stop()
            self._reader = None

    def sample(self) -> Sample | None:
        return self._reader.latest if self._reader is not None else None


class JtopSource:
    """The jetson-stats service (jtop), when it runs: it reads sysfs as root, so it sees every rail."""

    name = "jtop"

    def __init__(self) -> None:
        self._jetson: Any = None  # a jtop object: jetson-stats ships no stubs

    @staticmethod
    def available() -> bool:
        return Path("/run/jtop.sock").exists()

    def start(self) -> None:
        from jtop import jtop  # jetson-stats, installed on Jetsons only

        self._jetson = jtop()
        self._jetson.start()

    def stop(self) -> None:
        if self._jetson is not None:
            try:
                self._jetson.close()
            except Exception:  # noqa: BLE001
                pass
            self._jetson = None

    def sample(self) -> Sample | None:
        jetson = self._jetson
        if jetson is None or not jetson.ok():
            return None
        sample = Sample(timestamp=time.time(), source="jtop")
        stats = dict(jetson.stats)
        cores = []
        for key, value in stats.items():
            if key.startswith("CPU") and key[3:].isdigit():
                online = value != "OFF"
                cores.append(CpuCore(index=int(key[3:]) - 1, online=online, load_pct=float(value) if online else None))
        sample.cpu = sorted(cores, key=lambda c: c.index)
        loads = [c.load_pct for c in sample.cpu if c.load_pct is not None]
        sample.cpu_load_pct = round(sum(loads) / len(loads), 1) if loads else None
        if isinstance(stats.get("GPU"), (int, float)):
            sample.gpu_load_pct = float(stats["GPU"])
        if isinstance(stats.get("EMC"), (int, float)):
            sample.emc_load_pct = float(stats["EMC"])
        sample.temperatures_c = {
            k[5:]: float(v)
            for k, v in stats.items()
            if k.startswith("Temp ") and isinstance(v, (int, float)) and v > -50
        }
        sample.power = [
            PowerRail(name=k[6:], current_mw=float(v))
            for k, v in stats.items()
            if k.startswith("Power ") and k != "Power TOT" and isinstance(v, (int, float))
        ]
        fans = [float(v) for k, v in stats.items() if k.startswith("Fan") and isinstance(v, (int, float))]
        sample.fan_pct = fans[0] if fans else None
        _memory_fields(sample, Path("/"))
        return sample


def choose_source(kind: str, root: Path, tegrastats_path: str | None, interval_s: float) -> MetricsSource:
    if kind == "jetson":
        if JtopSource.available():
            try:
                import jtop  # noqa: F401

                return JtopSource()
            except ImportError:
                pass
        path = tegrastats_path or shutil.which("tegrastats")
        if path and os.access(path, os.X_OK):
            return TegrastatsSource(path, interval_s)
        log.warning("no jtop service and no tegrastats on this Jetson: falling back to /proc")
    elif tegrastats_path:
        return TegrastatsSource(tegrastats_path, interval_s)
    return ProcSource(root)
