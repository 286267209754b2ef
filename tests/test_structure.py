"""The structure the code keeps (docs/ARCHITECTURE.md): SQL only in the data-access layer, typed job
parameters, no globals reached from job code, no import cycles. Measured by .ci/structure_report.py,
which prints the same figures for a review."""

from __future__ import annotations

import importlib.util
import sys

import pytest

from tests.support import REPO


def _load():
    spec = importlib.util.spec_from_file_location("structure_report", REPO / ".ci" / "structure_report.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["structure_report"] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def report():
    return _load().measure()


def test_the_detectors_see_what_they_look_for() -> None:
    """The checks below are only worth their zeros if the detectors find a real case."""
    module = _load()
    assert module.SQL.search('rows = conn.execute("SELECT id FROM trainings WHERE status = ?")')
    assert module.SQL.search("UPDATE jobs SET control = ?") and not module.SQL.search("select the update")
    graph = {"a.x": {"a.y"}, "a.y": {"a.z"}, "a.z": {"a.x"}, "a.w": set()}
    assert module.cycles(graph) == [["a.x", "a.y", "a.z"]]


def test_sql_lives_only_in_the_data_access_layer(report) -> None:
    assert report.sql_files == []


def test_job_parameters_are_typed(report) -> None:
    assert report.untyped_params == []


def test_worker_side_code_reaches_no_settings_or_memory_globals(report) -> None:
    assert report.globals_in_worker_code == []


def test_no_import_cycles(report) -> None:
    assert report.cycles == [] and report.cycles_all == []


def test_every_job_kind_declares_its_parameters() -> None:
    from appliance.jobs.registry import KINDS

    assert [name for name, kind in KINDS.items() if kind.params is None] == []
