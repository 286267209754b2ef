"""The API process never imports torch, transformers, datasets or umap: it stays small and quick to restart."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.support import Appliance, bare_env

HEAVY = ("torch", "transformers", "datasets", "umap", "numba", "safetensors")


def test_app_factory_imports_nothing_heavy(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from appliance.api.app import create_app\n"
        "from appliance.commands.serve import serve\n"
        "import appliance.commands.cli\n"
        "create_app()\n"
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r})))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        env=bare_env(MISTUDIO_DATA_DIR=str(tmp_path)),
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]", result.stdout


def test_running_api_has_no_torch_loaded(shared_appliance: Appliance) -> None:
    # After real traffic, including jobs, the live process maps no torch library.
    job_id = shared_appliance.selftest(steps=2, delay_ms=0)
    shared_appliance.wait_status(job_id, "completed")
    maps = Path(f"/proc/{shared_appliance.api.pid}/maps").read_text()
    # The torch package's files, not any path with a "torch" folder in it (a venv at /opt/torch/.venv)
    assert "libtorch" not in maps and "-packages/torch/" not in maps
    status = Path(f"/proc/{shared_appliance.api.pid}/status").read_text()
    rss_kb = int(next(line for line in status.splitlines() if line.startswith("VmRSS")).split()[1])
    assert rss_kb < 150_000, f"API RSS {rss_kb} kB"
