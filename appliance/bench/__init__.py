"""``mistudio bench <suite>``: benchmarks that start their own appliance and print figures.

Each suite is a module ``appliance.bench.<suite>`` with ``run(args) -> int`` (``args`` is the parsed
``mistudio bench`` command line). Suites share :mod:`appliance.bench.harness`, which starts an API and
a worker on a free port with a throw-away data dir and prints the figures table.

A benchmark reports; it does not judge: a missed target still exits 0. Non-zero means the benchmark
itself could not run (the appliance did not start, a request failed, ...).
"""

from __future__ import annotations

import argparse
import importlib
import sys

from appliance.bench.harness import BenchError

# Suites in the order they are planned; a suite whose module is not written yet says so.
SUITES = ("api", "monitoring", "datasets", "extraction", "training", "features", "steering")


def load_suite(suite: str):
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


def run_bench(suite: str, args: argparse.Namespace) -> int:
    try:
        module = load_suite(suite)
        if module is None:
            print(f"mistudio bench: the {suite!r} suite is not implemented yet", file=sys.stderr)
            return 2
        return int(module.run(args) or 0)
    except BenchError as exc:
        print(f"mistudio bench {suite}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"mistudio bench {suite}: interrupted", file=sys.stderr)
        return 130
