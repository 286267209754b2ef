"""``mistudio bench <suite>``: benchmarks that start their own appliance and print figures.

Each suite is a module ``appliance.commands.bench.<suite>`` with ``run(args) -> int`` (``args`` is the parsed
``mistudio bench`` command line). Suites share :mod:`appliance.commands.bench.harness`, which starts an API and
a worker on a free port with a throw-away data dir and prints the figures table.

Every suite ends with :func:`appliance.commands.bench.harness.finish`, which prints the figures, records the
run (``docs/bench/<suite>.json``, see :mod:`appliance.commands.bench.records`) and gives the one exit
convention: 0 every target met, 1 a target missed (or a figure measured with errors: failed
requests, lost events, non-200 pages), 2 the benchmark itself could not run, 130 interrupted.
"""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
import traceback
from pathlib import Path
from types import ModuleType

from appliance.commands.bench import harness
from appliance.commands.bench.harness import EXIT_BROKEN, EXIT_INTERRUPTED, BenchError

# Suites in the order they are planned; a suite whose module is not written yet says so.
SUITES = (
    "api",
    "monitoring",
    "datasets",
    "extraction",
    "training",
    "features",
    "steering",
    "quality",
    "pipeline",
    "explain",
)


def load_suite(suite: str) -> ModuleType | None:
    """The module for ``suite``, or None if that suite is planned but not written yet."""
    if suite not in SUITES:
        raise BenchError(f"unknown benchmark suite {suite!r}; known: {', '.join(SUITES)}")
    name = f"{__name__}.{suite}"
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name == name:
            return None
        raise


def record_dir(args: argparse.Namespace) -> Path | None:
    """Where this run is recorded: --record-dir, else the checkout's docs/bench; None with --no-record."""
    from appliance.commands.bench import records

    if getattr(args, "no_record", False):
        return None
    chosen = getattr(args, "record_dir", None)
    return Path(chosen) if chosen else records.default_dir()


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def run_bench(suite: str, args: argparse.Namespace) -> int:
    harness.RECORD_DIR = record_dir(args)
    # SIGTERM unwinds like Ctrl-C, so the throw-away appliance is stopped rather than orphaned; SIGINT is
    # installed too because a shell that starts a command with `&` leaves it ignored.
    previous = signal.signal(signal.SIGTERM, _interrupt)
    previous_int = signal.signal(signal.SIGINT, _interrupt)
    try:
        module = load_suite(suite)
        if module is None:
            print(f"mistudio bench: the {suite!r} suite is not implemented yet", file=sys.stderr)
            return EXIT_BROKEN
        return int(module.run(args) or 0)
    except BenchError as exc:
        print(f"mistudio bench {suite}: could not run: {exc} (exit {EXIT_BROKEN})", file=sys.stderr)
        return EXIT_BROKEN
    except KeyboardInterrupt:
        print(f"mistudio bench {suite}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception:  # noqa: BLE001 - an unexpected crash must not exit 1, which means "a target missed"
        traceback.print_exc()
        print(f"mistudio bench {suite}: could not run (exit {EXIT_BROKEN})", file=sys.stderr)
        return EXIT_BROKEN
    finally:
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, previous_int)
