"""Recorded bench runs, and the README's figures made from them.

``mistudio bench <suite>`` records what it measured as ``docs/bench/<suite>.json`` in the checkout
it runs from: the date, the machine, the suite's settings, every figure with its target and verdict.
The README quotes figures only inside marked blocks rendered from those files::

    <!-- bench:api -->
    ...the table render_block() makes from docs/bench/api.json...
    <!-- /bench:api -->

Recording a run refreshes its suite's block (if the README has one), and a test fails when a block
differs from what its record renders to, so the README cannot quote a figure no run produced.

Only the standard library here, like the harness.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any

import appliance

_CHECKOUT = Path(appliance.__file__).resolve().parent.parent
README = _CHECKOUT / "README.md"
BLOCK = re.compile(r"<!-- bench:(?P<suite>[a-z]+) -->\n(?P<body>.*?)<!-- /bench:(?P=suite) -->", re.S)


def default_dir() -> Path | None:
    """``docs/bench`` of the source checkout the bench runs from; None for an installed package
    (nowhere sensible to record into: pass ``--record-dir``)."""
    return _CHECKOUT / "docs" / "bench" if (_CHECKOUT / "pyproject.toml").exists() else None


def record_path(directory: Path, suite: str) -> Path:
    return directory / f"{suite}.json"


def _write_atomic(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` whole: a reader, or a crash or full disk mid-write, never leaves
    half a file (and no temporary file is left behind)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_record(directory: Path, record: dict[str, Any]) -> Path:
    """Write ``record`` as ``<directory>/<suite>.json``, atomically."""
    directory.mkdir(parents=True, exist_ok=True)
    path = record_path(directory, record["suite"])
    _write_atomic(path, json.dumps(record, indent=2, ensure_ascii=False) + "\n")
    return path


def load_record(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _machine_text(machine: dict[str, Any], long_run: bool = False) -> str:
    cpu = f", {machine['cpu']}" if machine.get("cpu") else ""
    ram = f", {machine['ram_gb']:.1f} GB RAM" if machine.get("ram_gb") else ""
    # The machine's other load at the end of the run, since the figures depend on it; a run of
    # minutes (the demo) shows the 5- and 15-minute averages too, as the last minute is not the run.
    averages = machine.get("load_average")
    load = (
        ""
        if not averages
        else f", load average {' / '.join(f'{x:.1f}' for x in averages)} (1 / 5 / 15 min)"
        if long_run
        else f", load average {averages[0]:.1f} (1 min)"
    )
    return f"{machine['cores']} cores ({machine['usable_cores']} usable){cpu}{ram}{load}; Python {machine['python']}"


def render_block(record: dict[str, Any]) -> str:
    """The Markdown the README shows for a recorded run (between its block markers)."""
    if "transcript" in record:  # a command's recorded output (mistudio demo), not a figures table
        return render_transcript(record)
    machine = record["machine"]
    judged = [f for f in record["figures"] if f["verdict"]]
    missed = [f for f in judged if f["verdict"] == "MISS"]
    plural = "s" if len(judged) != 1 else ""
    verdict = (
        f"{len(missed)} of {len(judged)} judged figure{plural} missed"
        if missed
        else f"{len(judged)} of {len(judged)} judged figure{plural} met"
        if judged
        else "no targets"
    )
    settings = ", ".join(f"{k}={v}" for k, v in record.get("settings", {}).items()) or "defaults"
    lines = [
        f"`{record['command']}` on {record['recorded_at'][:10]}: {_machine_text(machine)}. "
        f"Settings: {settings}. Result: {verdict} (exit {record['exit_code']}). "
        f"Recorded in [docs/bench/{record['suite']}.json](docs/bench/{record['suite']}.json).",
        "",
        "| figure | value | target | result | note |",
        "|---|--:|---|---|---|",
    ]
    for f in record["figures"]:
        note = "; ".join(p for p in (f"{f['errors']} errors" if f["errors"] else "", f["note"]) if p)
        lines.append(
            "| " + " | ".join(_cell(c) for c in (f["name"], f["text"], f["target_text"], f["verdict"], note)) + " |"
        )
    return "\n".join(lines) + "\n"


def render_transcript(record: dict[str, Any]) -> str:
    """A recorded command's output as the README shows it: where and when it ran, then the output
    itself (``transcript``: the lines it printed, without progress-bar redraws)."""
    appliance = record.get("appliance") or {}
    runtime = ", ".join(
        p
        for p in (
            "Jetson" if appliance.get("platform_kind") == "jetson" else "",
            f"CUDA on {appliance['gpu_name']}" if appliance.get("cuda_available") else "CPU only",
            f"torch {appliance['torch']}" if appliance.get("torch") else "",
        )
        if p
    )
    where = (
        f"on the same machine ({runtime})"
        if appliance.get("same_machine")
        else f"on {appliance.get('device_name', 'another machine')} ({runtime})"
    )
    lines = [
        f"`{record['command']}` on {record['recorded_at'][:10]}: {_machine_text(record['machine'], True)}; "
        "the appliance "
        f"{where}. Recorded in [docs/bench/{record['suite']}.json](docs/bench/{record['suite']}.json).",
        "",
        "```text",
        f"$ .venv/bin/{record['command']}",
        *record["transcript"],
        "```",
    ]
    return "\n".join(lines) + "\n"


def save(directory: Path, record: dict[str, Any]) -> tuple[Path, Path | None]:
    """Write ``record`` (see write_record) and refresh its block in the README of the checkout that
    ``directory`` (``<checkout>/docs/bench``) is in: the record's path, and the README's if it had one."""
    path = write_record(directory, record)
    readme = directory.parent.parent / "README.md"
    return path, readme if refresh_readme(readme, record) else None


def readme_blocks(text: str) -> dict[str, str]:
    """suite -> the text of its marked block in the README."""
    return {m["suite"]: m["body"] for m in BLOCK.finditer(text)}


def refresh_all(readme: Path = README, directory: Path | None = None) -> list[str]:
    """Re-render every block of ``readme`` from its record (after a change to render_block)."""
    directory = directory or default_dir()
    assert directory is not None, "no checkout: nothing recorded"
    return [
        suite
        for suite in readme_blocks(readme.read_text())
        if record_path(directory, suite).exists() and refresh_readme(readme, load_record(record_path(directory, suite)))
    ]


def refresh_readme(readme: Path, record: dict[str, Any]) -> bool:
    """Replace the suite's block in ``readme`` with the record's rendering; False if it has none."""
    if not readme.exists():
        return False
    text = readme.read_text()
    suite = record["suite"]
    match = next((m for m in BLOCK.finditer(text) if m["suite"] == suite), None)
    if match is None:
        return False
    updated = text[: match.start("body")] + render_block(record) + text[match.end("body") :]
    if updated != text:
        _write_atomic(readme, updated)
    return True


if __name__ == "__main__":  # python -m appliance.commands.bench.records: re-render the README's blocks
    print("refreshed:", ", ".join(refresh_all()) or "nothing")
