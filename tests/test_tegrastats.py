"""tegrastats parsing: every real board line in the fixture, the documented forms, and robustness."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from appliance.device.sample import Sample
from appliance.device.tegrastats import TegrastatsReader, parse_line
from tests.support import REPO, wait_until

FIXTURE = REPO / "tests/fixtures/tegrastats_samples.txt"


def fixture_lines() -> list[tuple[str, str]]:
    lines, label = [], ""
    for raw in FIXTURE.read_text().splitlines():
        if raw.startswith("# ") and raw[2:3].isdigit():
            label = raw[2:].split("|")[0].strip()
        elif raw.strip() and not raw.startswith("#"):
            lines.append((label, raw))
    return lines


# Read off each line by eye (board in the key): RAM used/total, swap, per-core loads with offline cores
# as None, the first core's MHz, mean load, GPU load/MHz, EMC load/MHz, some temperatures, sensors that
# must be absent, and the rails (current, average) in mW.
EXPECTED = {
    "1. Jetson AGX Xavier (16GB), 2018 capture, non-root": dict(
        ram=(1733, 15827),
        swap=None,
        loads=[1, 0, 0, 0, None, None, None, None],
        freq0=1190,
        mean=0.25,
        gpu=(4, None),
        emc=(0, None),
        temps={"AO": 25.5, "Tdiode": 29.75, "iwlwifi": 32, "PMIC": 100},
        absent=[],
        rails={"GPU": (621, 621), "CPU": (465, 465), "SOC": (1397, 1397), "CV": (0, 0), "SYS5V": (2053, 2053)},
    ),
    "3. Jetson TX2 (board inferred: 8GB, 6 cores, BCPU/MCPU temps, VDD_* rails), root": dict(
        ram=(4722, 7844),
        swap=None,
        loads=[55, 14, 27, 55, 47, 45],
        freq0=2035,
        mean=40.5,
        gpu=(71, 1300),
        emc=(2, 1866),
        temps={"BCPU": 45, "MCPU": 45, "Tdiode": 46.75, "thermal": 46.4},
        absent=[],
        rails={
            "VDD_IN": (14025, 14416),
            "VDD_CPU": (2209, 2538),
            "VDD_GPU": (6854, 6903),
            "VDD_SOC": (1371, 1370),
            "VDD_WIFI": (19, 19),
            "VDD_DDR": (2702, 2702),
        },
    ),
    "4. Jetson Nano (4GB), root (IRAM, POM_5V_* rails)": dict(
        ram=(1180, 3965),
        swap=(149, 1024),
        loads=[30, 33, 28, 26],
        freq0=1036,
        mean=29.25,
        gpu=(0, 76),
        emc=(10, 1600),
        temps={"PLL": 57, "CPU": 60.5, "GPU": 59, "thermal": 59.75},
        absent=[],
        rails={"POM_5V_IN": (4520, 4680), "POM_5V_GPU": (0, 0), "POM_5V_CPU": (1078, 1205)},
    ),
    "6. Jetson AGX Orin 32GB (JetPack 5 era, Jan 2023), root, with date prefix and mW rails": dict(
        ram=(2257, 30536),
        swap=(0, 15268),
        loads=[2, 0, 1, 0, 3, 0, 0, 0, 1, 0, 0, 0],
        freq0=729,
        mean=0.58,
        gpu=(0, None),
        emc=(0, 204),
        temps={"CPU": 41.437, "tj": 41.656, "SOC1": 38.937, "Tboard": 29},
        absent=["CV0", "CV1", "CV2", "GPU"],
        rails={
            "VDD_GPU_SOC": (2390, 2390),
            "VDD_CPU_CV": (796, 796),
            "VIN_SYS_5V0": (3522, 3522),
            "VDDQ_VDD2_1V8AO": (301, 301),
        },
    ),
}


def test_every_fixture_line_has_expectations() -> None:
    assert sorted(label for label, _ in fixture_lines()) == sorted(EXPECTED)


@pytest.mark.parametrize("label, line", fixture_lines(), ids=[label[:2].strip(". ") for label, _ in fixture_lines()])
def test_fixture_line(label: str, line: str) -> None:
    want = EXPECTED[label]
    sample = parse_line(line, timestamp=123.0)
    assert sample.source == "tegrastats" and sample.timestamp == 123.0
    assert (sample.ram_used_mb, sample.ram_total_mb) == want["ram"]
    assert ((sample.swap_used_mb, sample.swap_total_mb) if want["swap"] else sample.swap_total_mb) == want["swap"]
    assert [c.load_pct if c.online else None for c in sample.cpu] == want["loads"]
    assert [c.index for c in sample.cpu] == list(range(len(want["loads"])))
    assert sample.cpu[0].freq_mhz == want["freq0"]
    assert sample.cpu_load_pct == pytest.approx(want["mean"], abs=0.01)
    assert (sample.gpu_load_pct, sample.gpu_freq_mhz) == want["gpu"]
    assert (sample.emc_load_pct, sample.emc_freq_mhz) == want["emc"]
    for name, celsius in want["temps"].items():
        assert sample.temperatures_c[name] == celsius
    for name in want["absent"]:
        assert name not in sample.temperatures_c  # printed as -256C: no such sensor
    rails = {r.name: (r.current_mw, r.average_mw) for r in sample.power}
    for name, values in want["rails"].items():
        assert rails[name] == values


def test_nvidia_documented_form_with_shared_frequency() -> None:
    line = (
        "RAM 2448/3964MB (lfb 74x4MB) SWAP 0/1982MB (cached 0MB) CPU [12%,5%,off,off]@1574 EMC_FREQ 0% "
        "GR3D_FREQ 0% PLL@40C CPU@42.5C PMIC@100C GPU@40.5C AO@49C thermal@41.25C"
    )
    sample = parse_line(line)
    assert [(c.online, c.load_pct, c.freq_mhz) for c in sample.cpu] == [
        (True, 12, 1574),
        (True, 5, 1574),
        (False, None, None),
        (False, None, None),
    ]
    assert sample.cpu_load_pct == 8.5 and (sample.ram_used_mb, sample.swap_total_mb) == (2448, 1982)
    assert sample.temperatures_c == {"PLL": 40, "CPU": 42.5, "PMIC": 100, "GPU": 40.5, "AO": 49, "thermal": 41.25}


def test_orin_gpu_frequency_list_and_second_cluster() -> None:
    sample = parse_line("RAM 3000/7620MB GR3D_FREQ 12%@[1300,1020] GR3D2_FREQ 30%@[612] VDD_IN 5000mW/4800mW/6100mW")
    assert (sample.gpu_load_pct, sample.gpu_freq_mhz) == (30, 1300)
    assert [(r.name, r.current_mw, r.average_mw) for r in sample.power] == [("VDD_IN", 5000, 4800)]


def test_date_prefixes_units_single_rail_values_and_unknown_fields() -> None:
    line = (
        "2024-05-06 17:34:21 RAM 1.5/7.5GB SWAP 512/4096kB NEWTHING ??? CPU [7%@-1,off] FAN 42% "
        "DLA0_FREQ 3%@614 tj@48.25C weird@-256C VDD_IN 3000mW NVDEC off"
    )
    sample = parse_line(line)
    assert (sample.ram_used_mb, sample.ram_total_mb) == (1536, 7680)
    assert (sample.swap_used_mb, sample.swap_total_mb) == (0.5, 4.0)
    assert [(c.load_pct, c.freq_mhz) for c in sample.cpu] == [(7, None), (None, None)]
    assert sample.fan_pct == 42 and sample.temperatures_c == {"tj": 48.25}
    assert [(r.name, r.current_mw, r.average_mw) for r in sample.power] == [("VDD_IN", 3000, None)]


@pytest.mark.parametrize(
    "line",
    [
        "",
        "   ",
        "RAM",
        "RAM /MB",
        "CPU [",
        "CPU [%@,",
        "GR3D_FREQ %@[,]",
        "VDD_IN mW/",
        "@C",
        "(((",
        "RAM 1/2MB (lfb",
        "CPU []@",
        "\x00\xff",
    ],
)
def test_fragments_never_crash(line: str) -> None:
    assert isinstance(parse_line(line), Sample)


FRAGMENTS = [word for _, full in fixture_lines() for word in full.split()] + [
    "CPU",
    "[12%,5%,off]@1574",
    "GR3D_FREQ",
    "12%@[1300,1300]",
    "VDD_IN",
    "400mW/400mW/500mW",
    "@-256C",
    "(lfb",
    "7x4MB)",
    "RAM",
    "SWAP",
    "IRAM",
    "0/252kB(lfb",
    "MTS",
    "fg",
    "0%",
    "]",
    "[",
    "off",
]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=400))
def test_any_text_parses_without_error(text: str) -> None:
    assert isinstance(parse_line(text), Sample)


mutated = st.sampled_from(FRAGMENTS).flatmap(
    lambda f: st.one_of(
        st.just(f),
        st.text(max_size=3).map(lambda junk: f[: len(f) // 2] + junk),
        st.integers(-(10**12), 10**12).map(lambda n: f.replace("1", str(n), 1)),
    )
)


@settings(max_examples=300, deadline=None)
@given(st.lists(mutated, max_size=40))
def test_mutated_board_output_never_crashes(tokens: list[str]) -> None:
    sample = parse_line(" ".join(tokens))
    assert isinstance(sample, Sample)
    assert all(c.load_pct is None or c.load_pct >= 0 for c in sample.cpu)


@settings(max_examples=150, deadline=None)
@given(
    used=st.integers(0, 64000),
    extra=st.integers(1, 64000),
    cores=st.lists(st.one_of(st.none(), st.tuples(st.integers(0, 100), st.integers(1, 3000))), min_size=1, max_size=12),
    gpu=st.integers(0, 100),
    temp=st.floats(-40, 120, allow_nan=False).map(lambda t: round(t, 2)),
    rail=st.tuples(st.integers(0, 60000), st.integers(0, 60000)),
)
def test_generated_lines_read_back(used, extra, cores, gpu, temp, rail) -> None:
    cpu = ",".join("off" if c is None else f"{c[0]}%@{c[1]}" for c in cores)
    line = f"RAM {used}/{used + extra}MB CPU [{cpu}] GR3D_FREQ {gpu}% tj@{temp}C VDD_IN {rail[0]}mW/{rail[1]}mW"
    sample = parse_line(line)
    assert (sample.ram_used_mb, sample.ram_total_mb) == (used, used + extra)
    assert [None if not c.online else (c.load_pct, c.freq_mhz) for c in sample.cpu] == cores
    assert sample.gpu_load_pct == gpu and sample.temperatures_c == {"tj": temp}
    assert [(r.current_mw, r.average_mw) for r in sample.power] == [rail]


def test_reader_runs_a_tegrastats_executable(tmp_path: Path) -> None:
    lines = [line for _, line in fixture_lines()][:3]
    (tmp_path / "lines.txt").write_text("\n".join(lines) + "\n")
    script = tmp_path / "tegrastats"
    script.write_text(
        f'#!/bin/sh\necho $$ > {tmp_path}/pid\nwhile IFS= read -r l; do echo "$l"; sleep 0.05; '
        f"done < {tmp_path}/lines.txt\nsleep 30\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    seen: list[Sample] = []
    reader = TegrastatsReader(str(script), interval_ms=500, on_sample=seen.append)
    reader.start()
    try:
        wait_until(lambda: len(seen) == 3, timeout=60, what="three samples")
        assert [s.ram_total_mb for s in seen] == [15827, 7844, 3965]
        assert reader.latest is seen[-1] and reader.running
    finally:
        reader.stop()
    # The script sleeps 30 s after its lines: stop() ended it rather than waiting for it.
    pid = int((tmp_path / "pid").read_text())
    assert not reader.running
    assert not os.path.exists(f"/proc/{pid}") or " Z " in Path(f"/proc/{pid}/stat").read_text()
