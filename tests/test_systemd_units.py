"""The systemd units in systemd/: the settings the appliance relies on, and `systemd-analyze verify`.

The units hold the placeholder @APPDIR@, which install.sh replaces with the absolute path of the
checkout; the verify tests do the same with a temporary directory holding a fake executable.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
UNIT_DIR = ROOT / "systemd"
DATA_DIR = "/var/lib/mistudio"
SERVICES = {
    # unit: (mistudio subcommand, TimeoutStopSec)
    "mistudio.service": ("serve", 10),
    "mistudio-worker.service": ("worker", 20),
}
TARGET = "mistudio.target"
ALL_UNITS = [*SERVICES, TARGET]


def parse_unit(path: Path) -> dict[str, list[tuple[str, str]]]:
    """A unit file as {section: [(key, value), ...]}, keeping repeated keys (Environment=) in order.

    configparser cannot keep repeated keys, hence this small parser of the systemd.syntax(7) format:
    comments start with # or ;, a trailing backslash continues the line.
    """
    sections: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] | None = None
    pending = ""
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        line = pending + raw.strip()
        pending = ""
        if not line or line[0] in "#;":
            continue
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], [])
            continue
        assert current is not None, f"{path.name}:{number}: key outside a section: {line!r}"
        assert "=" in line, f"{path.name}:{number}: not a key=value line: {line!r}"
        key, value = line.split("=", 1)
        current.append((key.strip(), value.strip()))
    assert not pending, f"{path.name}: ends with a line continuation"
    return sections


def values(unit: dict[str, list[tuple[str, str]]], section: str, key: str) -> list[str]:
    return [v for k, v in unit.get(section, []) if k == key]


def one(unit: dict[str, list[tuple[str, str]]], section: str, key: str) -> str:
    found = values(unit, section, key)
    assert len(found) == 1, f"[{section}] {key}= should be set exactly once, found {found}"
    return found[0]


def words(unit: dict[str, list[tuple[str, str]]], section: str, key: str) -> list[str]:
    return [w for v in values(unit, section, key) for w in v.split()]


@pytest.fixture(scope="module")
def units() -> dict[str, dict[str, list[tuple[str, str]]]]:
    return {name: parse_unit(UNIT_DIR / name) for name in ALL_UNITS}


def test_unit_files_match_what_install_sh_installs():
    on_disk = sorted(p.name for p in UNIT_DIR.iterdir() if p.suffix in (".service", ".target"))
    assert on_disk == sorted(ALL_UNITS)
    script = (ROOT / "install.sh").read_text()
    listed = re.search(r"^UNITS=\(([^)]*)\)", script, re.M)
    assert listed, "install.sh should list the units it installs in UNITS=(...)"
    assert sorted(listed.group(1).split()) == sorted(ALL_UNITS)
    # install.sh creates the data dir the units write to.
    assert re.search(rf"^SYSTEM_DATA_DIR={re.escape(DATA_DIR)}$", script, re.M)


def test_only_the_appdir_placeholder_is_used():
    for name in ALL_UNITS:
        text = (UNIT_DIR / name).read_text()
        assert set(re.findall(r"@[A-Z_]+@", text)) <= {"@APPDIR@"}, name
    for name in SERVICES:
        assert "@APPDIR@" in (UNIT_DIR / name).read_text()


@pytest.mark.parametrize("name", list(SERVICES))
def test_service_runs_the_right_command_as_mistudio(units, name):
    unit = units[name]
    subcommand, _ = SERVICES[name]
    exec_start = one(unit, "Service", "ExecStart")
    assert exec_start == f"@APPDIR@/.venv/bin/mistudio {subcommand}"
    assert exec_start.endswith(f"mistudio {subcommand}")
    assert one(unit, "Service", "WorkingDirectory") == "@APPDIR@"
    assert one(unit, "Service", "User") == "mistudio"
    assert one(unit, "Service", "Group") == "mistudio"
    assert one(unit, "Service", "Type") == "simple"
    env = words(unit, "Service", "Environment")
    assert f"MISTUDIO_DATA_DIR={DATA_DIR}" in env
    assert "PYTHONUNBUFFERED=1" in env
    # Optional settings file; the leading "-" makes a missing file fine.
    assert one(unit, "Service", "EnvironmentFile") == "-/etc/mistudio/mistudio.env"
    assert "network.target" in words(unit, "Unit", "After")
    assert one(unit, "Unit", "PartOf") == TARGET
    assert one(unit, "Unit", "Description")


@pytest.mark.parametrize("name", list(SERVICES))
def test_service_restarts_stops_and_logs(units, name):
    unit = units[name]
    _, stop_timeout = SERVICES[name]
    assert one(unit, "Service", "Restart") == "on-failure"
    assert one(unit, "Service", "RestartSec") == "3"
    assert one(unit, "Service", "KillSignal") == "SIGTERM"
    assert int(one(unit, "Service", "TimeoutStopSec")) == stop_timeout
    assert one(unit, "Service", "StandardOutput") == "journal"
    assert one(unit, "Service", "StandardError") == "journal"
    assert one(unit, "Service", "SyslogIdentifier") == name.removesuffix(".service")


def test_stop_timeouts_leave_room_for_a_clean_stop(units):
    from appliance.commands.serve import GRACEFUL_SHUTDOWN_S

    api_timeout = int(one(units["mistudio.service"], "Service", "TimeoutStopSec"))
    assert api_timeout > GRACEFUL_SHUTDOWN_S + 2
    # The worker needs ~8 s to checkpoint or re-queue its running job on SIGTERM.
    worker_timeout = int(one(units["mistudio-worker.service"], "Service", "TimeoutStopSec"))
    assert worker_timeout >= 2 * 8


@pytest.mark.parametrize("name", list(SERVICES))
def test_service_hardening(units, name):
    unit = units[name]
    expected = {
        "NoNewPrivileges": "yes",
        "PrivateTmp": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "read-only",
        "ProtectKernelTunables": "yes",
        "ProtectControlGroups": "yes",
        "RestrictSUIDSGID": "yes",
        "LockPersonality": "yes",
        "UMask": "0027",
    }
    for key, value in expected.items():
        assert one(unit, "Service", key) == value, key
    # ProtectSystem=strict makes everything read-only: the data dir must be the writable exception,
    # and the very directory MISTUDIO_DATA_DIR points at.
    assert words(unit, "Service", "ReadWritePaths") == [DATA_DIR]
    data_dirs = [
        w.split("=", 1)[1] for w in words(unit, "Service", "Environment") if w.startswith("MISTUDIO_DATA_DIR=")
    ]
    assert data_dirs == [DATA_DIR]


def test_worker_keeps_gpu_device_access(units):
    worker = units["mistudio-worker.service"]
    # PrivateDevices, a DeviceAllow list or ProtectClock (which implies one) would hide the GPU's
    # device nodes; SupplementaryGroups fails where a group is missing (install.sh adds the groups).
    for key in ("PrivateDevices", "DeviceAllow", "DevicePolicy", "ProtectClock", "SupplementaryGroups"):
        assert not values(worker, "Service", key), key


def test_target_groups_both_services(units):
    target = units[TARGET]
    assert sorted(words(target, "Unit", "Wants")) == sorted(SERVICES)
    assert one(target, "Install", "WantedBy") == "multi-user.target"
    for name in SERVICES:
        assert one(units[name], "Unit", "PartOf") == TARGET
        # Started by the target only ("static"), so enabling the target is the one switch.
        assert "Install" not in units[name]


# ------------------------------------------------------------------------------------------------
# systemd-analyze verify
#
# What it prints on this project's machines (systemd 252, Debian 12, run as root, no systemd
# running): nothing at all for the real units. It does NOT complain that the user "mistudio" does not
# exist. Errors in a unit are printed as "/path/to/unit:LINE: message" (parse errors, unknown keys;
# these are warnings that keep exit code 0!) or "unit-name: message" (e.g. "mistudio.service: Command
# /x is not executable", exit code 1). With the default --recursive-errors=yes it also checks the
# units ours depend on (network.target, multi-user.target, ...), whose problems on some hosts are not
# ours. So the filter is: any line that names one of our units (or the temp dir holding them) is a
# failure, except a complaint about resolving the "mistudio" user/group, which other systemd versions
# may print on a machine where install.sh has not created the user yet. Lines about other units, and
# a non-zero exit code with no line about ours, are not failures. test_verify_flags_a_broken_unit
# proves the filter catches real problems on the machine the tests run on.
OURS = re.compile(r"mistudio(-worker)?\.(service|target)")
USER_LOOKUP = re.compile(
    r"(?i)(user|group)\b.*\bmistudio\b.*(not found|does not exist|no such|"
    r"failed to resolve|unknown)|failed to resolve (user|group)"
)

needs_analyze = pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")


def render_units(tmp_path: Path) -> Path:
    """Install the units the way install.sh does, with @APPDIR@ -> a temp app dir."""
    app = tmp_path / "app"
    exe = app / ".venv" / "bin" / "mistudio"
    exe.parent.mkdir(parents=True)
    exe.write_text("#!/bin/sh\nexit 0\n")
    exe.chmod(0o755)
    out = tmp_path / "units"
    out.mkdir()
    for name in ALL_UNITS:
        (out / name).write_text((UNIT_DIR / name).read_text().replace("@APPDIR@", str(app)))
    return out


def verify(unit_dir: Path, names: list[str]) -> tuple[int, list[str], list[str]]:
    env = dict(os.environ, SYSTEMD_LOG_COLOR="0", SYSTEMD_PAGER="", LC_ALL="C")
    proc = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *(str(unit_dir / n) for n in names)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=unit_dir,
    )
    lines = [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]
    ours = [line for line in lines if (OURS.search(line) or str(unit_dir) in line) and not USER_LOOKUP.search(line)]
    return proc.returncode, lines, ours


@needs_analyze
def test_systemd_analyze_verify_accepts_the_units(tmp_path):
    unit_dir = render_units(tmp_path)
    rc, lines, ours = verify(unit_dir, ALL_UNITS)
    assert ours == [], "systemd-analyze verify reports problems in our units:\n" + "\n".join(lines)
    if rc != 0:
        # Only unrelated units complained (see the comment above); our units are clean.
        print("systemd-analyze verify exit code", rc, "about other units:\n" + "\n".join(lines))


@needs_analyze
def test_verify_flags_a_broken_unit(tmp_path):
    """The filter above is not blind: a broken copy of the API unit is caught."""
    unit_dir = render_units(tmp_path)
    broken = (unit_dir / "mistudio.service").read_text()
    broken = broken.replace("Restart=on-failure", "Restart=sometimes\nNoSuchKey=1")
    broken = re.sub(r"^ExecStart=.*$", f"ExecStart={tmp_path}/missing/mistudio serve", broken, flags=re.M)
    (unit_dir / "mistudio.service").write_text(broken)
    rc, lines, ours = verify(unit_dir, ["mistudio.service"])
    joined = "\n".join(ours)
    assert rc != 0, joined
    assert "NoSuchKey" in joined
    assert "sometimes" in joined
    assert "not executable" in joined
