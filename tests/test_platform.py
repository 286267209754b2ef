"""Platform detection on simulated device trees, /proc sampling, nvpmodel parsing."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from appliance.device.platform import detect, jetpack_for, parse_l4t
from appliance.device.power import parse_nvpmodel
from appliance.device.procfs import meminfo_kb
from appliance.device.sources import ProcSource


def make_jetson_root(
    root: Path,
    model: str = "NVIDIA Jetson Orin Nano Developer Kit",
    soc: str = "tegra234",
    l4t: str = "# R36 (release), REVISION: 3.0, GCID: 36191598, "
    "BOARD: generic, EABI: aarch64, DATE: Mon May  6 17:34:21 UTC 2024",
    mem_kb: int = 7_999_000,
) -> Path:
    (root / "proc/device-tree").mkdir(parents=True, exist_ok=True)
    (root / "proc/device-tree/model").write_bytes(model.encode() + b"\x00")
    (root / "proc/device-tree/compatible").write_bytes(
        b"nvidia,p3768-0000+p3767-0005\x00nvidia,p3767-0005\x00nvidia," + soc.encode() + b"\x00"
    )
    (root / "proc/meminfo").write_text(f"MemTotal:       {mem_kb} kB\nMemFree:  1000 kB\nMemAvailable: 5000000 kB\n")
    (root / "etc").mkdir(exist_ok=True)
    (root / "etc/nv_tegra_release").write_text(l4t + "\n")
    (root / "dev").mkdir(exist_ok=True)
    (root / "dev/nvhost-gpu").write_text("")
    return root


def test_orin_nano_is_recognised(tmp_path: Path) -> None:
    info = detect(make_jetson_root(tmp_path))
    assert info.kind == "jetson"
    assert info.board == info.device_name == "NVIDIA Jetson Orin Nano Developer Kit"
    assert info.soc == "Orin (T234)" and info.l4t == "36.3.0" and info.jetpack == "6.0"
    assert info.unified_memory is True and info.cuda_available is True
    assert info.total_memory_mb == pytest.approx(7_999_000 / 1024, abs=0.1)


def test_xavier_on_jetpack_5(tmp_path: Path) -> None:
    info = detect(
        make_jetson_root(
            tmp_path,
            model="NVIDIA Jetson Xavier NX Developer Kit",
            soc="tegra194",
            l4t="# R35 (release), REVISION: 4.1, GCID: 33958178, BOARD: t186ref",
        )
    )
    assert (info.soc, info.l4t, info.jetpack) == ("Xavier (T194)", "35.4.1", "5.1.2")


def test_release_file_alone_means_jetson(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/nv_tegra_release").write_text("# R32 (release), REVISION: 7.1, GCID: 29818004\n")
    info = detect(tmp_path)
    assert info.kind == "jetson" and info.l4t == "32.7.1" and info.jetpack == "4.6.x"


def test_plain_machine_is_cpu(tmp_path: Path) -> None:
    info = detect(tmp_path)
    assert info.kind == "cpu" and info.board is None and info.unified_memory is False


@pytest.mark.parametrize(
    "text, expected", [("# R36 (release), REVISION: 4.3, GCID: 1", "36.4.3"), ("garbage", None), ("", None)]
)
def test_parse_l4t(text: str, expected: str | None) -> None:
    assert parse_l4t(text) == expected
    assert jetpack_for("36.4.3") == "6.1 / 6.2" and jetpack_for(None) is None and jetpack_for("99.1") is None


def test_parse_nvpmodel() -> None:
    assert parse_nvpmodel("NV Power Mode: 15W\n0\n") == ("15W", 0)
    assert parse_nvpmodel("NVPM WARN: something\nNV Power Mode: MAXN_SUPER\n2") == ("MAXN_SUPER", 2)
    assert parse_nvpmodel("") == (None, None)


def test_proc_source_on_this_machine() -> None:
    source = ProcSource()
    source.start()
    time.sleep(0.2)
    sample = source.sample()
    source.stop()
    assert sample.source == "proc" and len(sample.cpu) == os.cpu_count()
    assert all(0 <= c.load_pct <= 100 for c in sample.cpu if c.load_pct is not None)
    assert sample.cpu_load_pct is not None
    total = meminfo_kb()["MemTotal"] / 1024
    assert sample.ram_total_mb == pytest.approx(total, abs=1)
    assert 0 < sample.ram_used_mb < sample.ram_total_mb


def test_proc_source_reads_named_thermal_zones_and_skips_absent_ones(tmp_path: Path) -> None:
    for i, (kind, temp) in enumerate([("cpu-thermal", "45500"), ("gpu-thermal", "-256000"), ("soc0", "51250")]):
        zone = tmp_path / f"sys/class/thermal/thermal_zone{i}"
        zone.mkdir(parents=True)
        (zone / "type").write_text(kind + "\n")
        (zone / "temp").write_text(temp + "\n")
    (tmp_path / "proc").mkdir()
    (tmp_path / "proc/stat").write_text("cpu  1 2 3 4\ncpu0 10 0 10 80 0 0 0 0\ncpu1 5 0 5 90 0 0 0 0\n")
    (tmp_path / "proc/meminfo").write_text(
        "MemTotal: 1024000 kB\nMemAvailable: 512000 kB\nSwapTotal: 2048 kB\nSwapFree: 1024 kB\n"
    )
    source = ProcSource(tmp_path)
    source.start()
    (tmp_path / "proc/stat").write_text("cpu  1 2 3 4\ncpu0 40 0 10 110 0 0 0 0\ncpu1 5 0 5 190 0 0 0 0\n")
    sample = source.sample()
    assert sample.temperatures_c == {"cpu-thermal": 45.5, "soc0": 51.25}
    assert [c.load_pct for c in sample.cpu] == [50.0, 0.0] and sample.cpu_load_pct == 25.0
    assert (sample.ram_total_mb, sample.ram_used_mb) == (1000.0, 500.0)
    assert (sample.swap_total_mb, sample.swap_used_mb) == (2.0, 1.0)
