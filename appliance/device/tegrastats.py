"""tegrastats output -> normalised samples, for every Jetson board's format.

tegrastats prints one line per interval: ``KEY value`` pairs and ``NAME@temperatureC`` tokens whose
set and spelling change between boards and L4T releases (the fixture in tests/fixtures has real
lines from Xavier, TX2, Nano and Orin). The parser walks the tokens and lets a small handler take
each field it knows; anything else is skipped, so a new or garbled field never costs the others and
never raises.
"""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Callable

from appliance.device.sample import CpuCore, PowerRail, Sample

log = logging.getLogger("mistudio.tegrastats")

_DATE = re.compile(r"^\d{1,4}[-/.]\d{1,2}[-/.]\d{1,4}$|^\d{1,2}:\d{2}(:\d{2})?$")
_TEMP = re.compile(r"^([A-Za-z][\w.-]*)@(-?\d+(?:\.\d+)?)C$")
_KEY = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_MEM = re.compile(r"^(\d+(?:\.\d+)?)/(\d+(?:\.\d+)?)(kB|KB|MB|GB)")
_LOAD = re.compile(r"^(\d+(?:\.\d+)?)%(?:@(?:(-?\d+)|\[([\d,\s-]*)\]))?$")
_CORE = re.compile(r"^(\d+(?:\.\d+)?)%(?:@(-?\d+))?$")
_RAIL = re.compile(r"^(\d+(?:\.\d+)?)(?:mW)?(?:/(\d+(?:\.\d+)?)(?:mW)?)*$")
_NUMBER = re.compile(r"^-?\d+(?:\.\d+)?$")
_MB = {"kB": 1 / 1024, "KB": 1 / 1024, "MB": 1.0, "GB": 1024.0}
ABSENT_SENSOR_C = -200.0  # tegrastats prints -256C for a sensor that is not there


def _freq(text: str | None) -> int | None:
    try:
        value = int(text) if text is not None else None
    except ValueError:
        return None
    return value if value and value > 0 else None


def _skip_group(tokens: list[str], i: int) -> int:
    """Index after a parenthesised group that starts at ``tokens[i]`` (``(lfb 3283x4MB)``)."""
    while i < len(tokens) and ")" not in tokens[i]:
        i += 1
    return i + 1


class _Parser:
    def __init__(self, tokens: list[str], sample: Sample):
        self.tokens = tokens
        self.sample = sample
        self.gpu_loads: list[float] = []
        self.gpu_freqs: list[int] = []

    def memory(self, key: str, value: str) -> None:
        match = _MEM.match(value)
        if not match:
            return
        scale = _MB[match.group(3)]
        used, total = round(float(match.group(1)) * scale, 1), round(float(match.group(2)) * scale, 1)
        if key == "RAM":
            self.sample.ram_used_mb, self.sample.ram_total_mb = used, total
        elif key == "SWAP":
            self.sample.swap_used_mb, self.sample.swap_total_mb = used, total

    def cpu(self, i: int) -> int:
        """``[12%@1190,off,...]`` or the documented ``[12%,5%,off]@1574``; returns the next index."""
        parts = [self.tokens[i]]
        while "]" not in parts[-1] and i + 1 < len(self.tokens):
            i += 1
            parts.append(self.tokens[i])
        text = "".join(parts)
        inside, _, after = text[1:].partition("]")
        shared = _freq(after[1:]) if after.startswith("@") else None
        cores = []
        for index, item in enumerate(inside.split(",")):
            item = item.strip()
            if item.lower() == "off":
                cores.append(CpuCore(index=index, online=False))
                continue
            match = _CORE.match(item)
            if match:
                cores.append(
                    CpuCore(
                        index=index,
                        online=True,
                        load_pct=float(match.group(1)),
                        freq_mhz=_freq(match.group(2)) or shared,
                    )
                )
        self.sample.cpu = cores
        loads = [c.load_pct for c in cores if c.online and c.load_pct is not None]
        self.sample.cpu_load_pct = round(sum(loads) / len(loads), 2) if loads else None
        return i + 1

    def load(self, key: str, value: str) -> None:
        """``EMC_FREQ 2%@1866``, ``GR3D_FREQ 71%@1300``, Orin's ``GR3D_FREQ 12%@[1300,1300]``."""
        match = _LOAD.match(value)
        if not match:
            return
        load = float(match.group(1))
        freqs = (
            [_freq(f) for f in (match.group(3) or "").split(",")]
            if match.group(3) is not None
            else [_freq(match.group(2))]
        )
        freq = max((f for f in freqs if f), default=None)
        if key == "EMC_FREQ":
            self.sample.emc_load_pct, self.sample.emc_freq_mhz = load, freq
        else:  # GR3D_FREQ, GR3D2_FREQ (Orin's second GPU cluster)
            self.gpu_loads.append(load)
            if freq:
                self.gpu_freqs.append(freq)

    def rail(self, key: str, value: str) -> bool:
        if not _RAIL.match(value):
            return False
        numbers = [float(n) for n in re.findall(r"\d+(?:\.\d+)?", value)]
        self.sample.power.append(
            PowerRail(name=key, current_mw=numbers[0], average_mw=numbers[1] if len(numbers) > 1 else None)
        )
        return True

    def run(self) -> None:
        tokens, i = self.tokens, 0
        while i < len(tokens) and _DATE.match(tokens[i]):
            i += 1
        while i < len(tokens):
            token = tokens[i]
            try:
                i = self.field(i, token)
            except (ValueError, IndexError, OverflowError):
                i += 1  # a garbled value: drop this field, keep the rest of the line
        if self.gpu_loads:
            self.sample.gpu_load_pct = max(self.gpu_loads)
        if self.gpu_freqs:
            self.sample.gpu_freq_mhz = max(self.gpu_freqs)

    def field(self, i: int, token: str) -> int:
        tokens = self.tokens
        temp = _TEMP.match(token)
        if temp:
            celsius = float(temp.group(2))
            if celsius > ABSENT_SENSOR_C:
                self.sample.temperatures_c[temp.group(1)] = celsius
            return i + 1
        if token.startswith("("):
            return _skip_group(tokens, i)
        if not _KEY.match(token) or i + 1 >= len(tokens):
            return i + 1
        key, value = token, tokens[i + 1]
        if key in ("RAM", "SWAP", "IRAM"):
            self.memory(key, value)
            i += 2
            if "(" in value and ")" not in value:
                return _skip_group(tokens, i)  # IRAM's glued "0/252kB(lfb 252kB)"
            return _skip_group(tokens, i) if i < len(tokens) and tokens[i].startswith("(") else i
        if key == "CPU" and value.startswith("["):
            return self.cpu(i + 1)
        if key == "EMC_FREQ" or (key.startswith("GR3D") and key.endswith("FREQ")):
            self.load(key, value)
            return i + 2
        if key == "MTS":  # "MTS fg 0% bg 0%"
            return i + 5
        if key == "FAN" and value.endswith("%"):
            self.sample.fan_pct = float(value[:-1])
            return i + 2
        if _NUMBER.match(value) or value.endswith("%"):
            return i + 2  # an engine clock (APE 150, NVENC 716, VIC_FREQ 115) or a load we do not show
        if self.rail(key, value):
            return i + 2
        return i + 1


def parse_line(line: str, timestamp: float | None = None) -> Sample:
    """Parse one tegrastats line. Never raises: what cannot be read is left out of the sample."""
    sample = Sample(timestamp=time.time() if timestamp is None else timestamp, source="tegrastats")
    if not isinstance(line, str):
        return sample
    try:
        _Parser(line.split(), sample).run()
    except Exception:  # noqa: BLE001 - the promise is "never a crash"; a bug here loses one sample
        log.debug("unparsable tegrastats line: %r", line[:200], exc_info=True)
    return sample


class TegrastatsReader:
    """Runs ``tegrastats --interval MS`` and keeps the latest parsed sample."""

    def __init__(
        self, path: str | None = None, interval_ms: int = 2000, on_sample: Callable[[Sample], None] | None = None
    ):
        self.path = path or shutil.which("tegrastats") or "tegrastats"
        self.interval_ms = interval_ms
        self.on_sample = on_sample
        self._latest: Sample | None = None
        self._lock = threading.Lock()
        self._process: subprocess.Popen[str] | None = None
        self._thread: threading.Thread | None = None

    @property
    def latest(self) -> Sample | None:
        with self._lock:
            return self._latest

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        self._process = subprocess.Popen(
            [self.path, "--interval", str(self.interval_ms)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
            text=True,
            bufsize=1,
            start_new_session=True,
        )
        self._thread = threading.Thread(target=self._read, args=(self._process,), name="tegrastats", daemon=True)
        self._thread.start()

    def _read(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        for line in process.stdout:  # ends when the process exits or is stopped
            if not line.strip():
                continue
            sample = parse_line(line)
            with self._lock:
                self._latest = sample
            if self.on_sample is not None:
                try:
                    self.on_sample(sample)
                except Exception:  # noqa: BLE001
                    log.exception("tegrastats sample callback failed")

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=2)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._thread is not None:
            self._thread.join(timeout=2)
            self._thread = None
