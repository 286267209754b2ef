from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import Appliance
from tests.support import appliance_at as _appliance

# Small torch ops are 10-30x slower with 2 threads on a shared 2-core machine (measured).
os.environ.setdefault("MISTUDIO_TORCH_THREADS", "1")


@pytest.fixture
def make_appliance(tmp_path: Path) -> Iterator:
    """Build appliances (not started) in this test's temp dir; all are stopped at the end."""
    made: list[Appliance] = []

    def make(env: dict[str, str] | None = None, name: str = "a") -> Appliance:
        app = _appliance(tmp_path / name, env)
        made.append(app)
        return app

    yield make
    for app in made:
        for proc in (app.api, app.worker):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()


@pytest.fixture
def appliance(make_appliance) -> Appliance:
    """API and worker running on a fresh data dir."""
    app = make_appliance()
    app.start_api()
    app.start_worker()
    return app


@pytest.fixture(scope="module")
def shared_appliance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Appliance]:
    """One running appliance for tests that only read or add independent jobs."""
    app = _appliance(tmp_path_factory.mktemp("shared"))
    app.start_api()
    app.start_worker()
    yield app
    app.stop()
