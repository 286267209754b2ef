"""install.sh: syntax, options, the checks that must fail loudly, and re-runs that keep what exists.

Everything runs on copies of install.sh in temporary directories (never on the checkout's .venv):
install.sh works on the directory it lies in. Installing torch and all dependencies for real takes
minutes and is what `.ci/run` does (./install.sh --dev) before the tests.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "install.sh"
# The interpreter this venv was made from (a venv made by the venv's own python would be nested).
BASE_PYTHON = getattr(sys, "_base_executable", None) or sys.executable


def run(
    args: list[str], cwd: Path = ROOT, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    full_env = dict(os.environ)
    full_env.pop("MISTUDIO_PLATFORM", None)
    full_env.update(env or {})
    return subprocess.run(
        args, cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
    )


def copy_script(directory: Path) -> Path:
    target = directory / "install.sh"
    shutil.copy2(SCRIPT, target)
    return target


def fake_python(directory: Path, body: str) -> Path:
    path = directory / "fakepython"
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(0o755)
    return path


def test_script_is_executable_bash_with_valid_syntax():
    assert SCRIPT.stat().st_mode & stat.S_IXUSR
    assert SCRIPT.read_text().startswith("#!/usr/bin/env bash\n")
    result = run(["bash", "-n", str(SCRIPT)])
    assert result.returncode == 0, result.stderr


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed")
def test_shellcheck_is_clean():
    scripts = [str(SCRIPT)] + [str(p) for p in [ROOT / ".ci" / "run"] if p.exists()]
    result = run(["shellcheck", *scripts])
    assert result.returncode == 0, result.stdout + result.stderr


def test_help_prints_usage_and_does_nothing_else():
    for flag in ("--help", "-h"):
        result = run([str(SCRIPT), flag])
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith(
            "Usage: ./install.sh [--dev] [--system] [--cuda] [--torch-index URL] [--python PY] [-h]"
        )
        for option in ("--dev", "--system", "--cuda", "--torch-index URL", "--python PY", "-h, --help"):
            assert f"\n  {option}" in result.stdout, option
        assert "==>" not in result.stdout + result.stderr


def test_unknown_option_fails_with_usage():
    result = run([str(SCRIPT), "--bogus"])
    assert result.returncode == 1
    assert "ERROR: unknown option: --bogus" in result.stderr
    assert "Usage:" in result.stderr
    assert "==>" not in result.stdout


def test_option_missing_its_value_fails():
    result = run([str(SCRIPT), "--torch-index"])
    assert result.returncode == 1
    assert "--torch-index needs a URL" in result.stderr


def test_system_as_non_root_fails_before_doing_anything():
    # A world-readable copy, so that an unprivileged user can run it wherever the checkout lives.
    directory = Path(tempfile.mkdtemp(prefix="mistudio-install-"))
    try:
        directory.chmod(0o755)
        script = copy_script(directory)
        command = ["bash", str(script), "--system"]
        if os.geteuid() == 0:
            setpriv = shutil.which("setpriv")
            if setpriv is None:
                pytest.skip("running as root and setpriv is missing: cannot drop privileges")
            command = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", *command]
        result = run(command, cwd=directory, env={"HOME": str(directory)})
        assert result.returncode == 1, result.stdout + result.stderr
        assert "must run as root" in result.stderr
        assert "sudo ./install.sh --system" in result.stderr
        assert "==>" not in result.stdout  # no step started
        assert not (directory / ".venv").exists()
    finally:
        shutil.rmtree(directory)


def _path_without(directory: Path, *names: str) -> str:
    """A PATH of one folder linking to this system's commands, less ``names``."""
    folder = directory / "bin"
    folder.mkdir()
    for system in ("/usr/local/bin", "/usr/bin", "/bin", "/usr/sbin", "/sbin"):
        for command in sorted(Path(system).iterdir()) if Path(system).is_dir() else []:
            if command.name not in names and not os.path.lexists(folder / command.name):
                (folder / command.name).symlink_to(command)
    return str(folder)


@pytest.mark.parametrize("case", ["not-root", "no-apt-get"])
def test_dev_says_first_when_chromium_cannot_be_installed(case: str):
    """--dev needs root and apt-get for Debian's chromium: without them it says so before the long
    install (which goes on: here it stops at once on a missing Python, after the warning)."""
    directory = Path(tempfile.mkdtemp(prefix="mistudio-install-"))
    try:
        directory.chmod(0o755)
        script = copy_script(directory)
        hidden = ("chromium",) if case == "not-root" else ("chromium", "apt-get")
        command = ["bash", str(script), "--dev", "--python", str(directory / "no-such-python")]
        if case == "not-root" and os.geteuid() == 0:
            setpriv = shutil.which("setpriv")
            if setpriv is None:
                pytest.skip("running as root and setpriv is missing: cannot drop privileges")
            command = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", *command]
        if case == "not-root" and shutil.which("apt-get") is None:
            pytest.skip("no apt-get on this system: the not-root message is the no-apt-get one")
        result = run(command, cwd=directory, env={"HOME": str(directory), "PATH": _path_without(directory, *hidden)})
        assert result.returncode == 1 and "Python interpreter" in result.stderr, result.stdout + result.stderr
        warning = result.stderr.split("WARNING: ", 1)[-1]
        if case == "not-root":
            assert "with apt-get, which needs root" in warning and "sudo apt-get install chromium" in warning
        else:
            assert "no apt-get: install Chromium with its package manager" in warning
        assert "browser tests (tests/ui/) are skipped until it is there" in warning, result.stderr
        assert result.stderr.index("WARNING: ") < result.stderr.index("ERROR: ")  # said before anything else
    finally:
        shutil.rmtree(directory)


@pytest.mark.parametrize(
    "probe, messages",
    [
        (None, ["not found", "Python >= 3.10"]),
        # Answers like a Python 3.8 would to install.sh's version probe (prints it, exits 1).
        ("echo 3.8.10; exit 1", ["Python 3.8.10", "too old", ">= 3.10"]),
        ("exit 3", ["does not run as a Python interpreter"]),
    ],
    ids=["missing", "old", "not-python"],
)
def test_an_unusable_python_fails_clearly(tmp_path, probe: str | None, messages: list[str]):
    script = copy_script(tmp_path)
    python = fake_python(tmp_path, probe) if probe else tmp_path / "no-such-python"
    result = run([str(script), "--python", str(python)], cwd=tmp_path)
    assert result.returncode == 1
    for message in messages:
        assert message in result.stderr, message
    assert not (tmp_path / ".venv").exists()


def _base_python_has_torch() -> bool:
    return run([BASE_PYTHON, "-c", "import torch"], timeout=120).returncode == 0


@pytest.mark.timeout(120)
def test_jetson_without_torch_explains_and_rerun_reuses_the_venv(tmp_path):
    if _base_python_has_torch():
        pytest.skip(f"{BASE_PYTHON} has torch in its site-packages: a Jetson venv would use it")
    script = copy_script(tmp_path)
    env = {"MISTUDIO_PLATFORM": "jetson"}
    first = run([str(script), "--python", BASE_PYTHON], cwd=tmp_path, env=env)
    assert first.returncode == 1, first.stdout + first.stderr
    assert "==> Creating virtual environment in .venv" in first.stdout
    assert "--system-site-packages" in first.stdout
    cfg = (tmp_path / ".venv" / "pyvenv.cfg").read_text()
    assert "include-system-site-packages = true" in cfg
    assert "no usable torch on this Jetson" in first.stderr
    assert "./install.sh --torch-index https://" in first.stderr
    assert "Installing miStudio" not in first.stdout  # stopped before the package

    marker = tmp_path / ".venv" / "marker"
    marker.write_text("kept")
    second = run([str(script), "--python", BASE_PYTHON], cwd=tmp_path, env=env)
    assert second.returncode == 1
    assert "==> Reusing the virtual environment in .venv" in second.stdout
    assert "Creating virtual environment" not in second.stdout
    assert marker.read_text() == "kept"
    assert "no usable torch on this Jetson" in second.stderr


FAKE_PYPROJECT = """\
[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "mistudio-install-test"
version = "0.0.1"

[project.optional-dependencies]
dev = []
jetson = []

[project.scripts]
mistudio = "fakecli:main"

[tool.setuptools]
py-modules = ["fakecli"]
"""

FAKE_TORCH = """\
import types
__version__ = "2.13.0+cpu"
version = types.SimpleNamespace(cuda=None)
"""


@pytest.mark.timeout(180)
def test_rerun_keeps_an_installed_torch(tmp_path):
    """An existing venv with an importable torch is reused: torch is not installed again."""
    copy_script(tmp_path)
    (tmp_path / "pyproject.toml").write_text(FAKE_PYPROJECT)
    (tmp_path / "fakecli.py").write_text("def main():\n    print('mistudio 0.0.1-test')\n    return 0\n")
    venv = tmp_path / ".venv"
    made = run([BASE_PYTHON, "-m", "venv", str(venv)], timeout=120)
    assert made.returncode == 0, made.stderr
    site = run([str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"])
    torch_dir = Path(site.stdout.strip()) / "torch"
    torch_dir.mkdir()
    (torch_dir / "__init__.py").write_text(FAKE_TORCH)

    result = run(
        [str(tmp_path / "install.sh"), "--dev", "--python", BASE_PYTHON],
        cwd=tmp_path,
        env={"MISTUDIO_PLATFORM": "cpu"},
        timeout=150,
    )
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert "==> Reusing the virtual environment in .venv" in out
    assert "torch 2.13.0+cpu (CUDA: none) is already installed: keeping it" in out
    assert "Installing PyTorch" not in out
    assert "==> Installing miStudio (.[dev], editable)" in out
    assert "mistudio 0.0.1-test installed in .venv" in out
    assert "Run the tests:               .venv/bin/pytest" in out
    assert (torch_dir / "__init__.py").read_text() == FAKE_TORCH
    # pip never touched torch: it is still our fake, not a distribution pip installed.
    shown = run([str(venv / "bin" / "python"), "-m", "pip", "show", "torch"])
    assert shown.returncode != 0
    assert "Location 'file:///opt/" not in out  # pip's harmless noise is filtered
