"""What trainings and SAE imports may write to the data disk: checkpoints are kept to a bounded set
(the newest MISTUDIO_KEEP_CHECKPOINTS, the best, the user's own), checked against the free space and
never left partial; a full disk fails the training with INSUFFICIENT_STORAGE. An uploaded SAE zip
unpacks only to what an SAE of the model can need and the disk has free.

Small disks are tmpfs mounts over ``<data dir>/trainings`` (where checkpoints and unpacked imports
go), so the database and the rest of the appliance keep working while that disk fills."""

from __future__ import annotations

import struct
import subprocess
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.support import Appliance, demo_activations, demo_kit, started_demo, wait_until
from tests.test_api_contract import assert_error

LAYER = 2
KEEP = 2
MB = 1 << 20


@pytest.fixture(scope="module")
def app(tmp_path_factory) -> Iterator[Appliance]:
    env = {"MISTUDIO_KEEP_CHECKPOINTS": str(KEEP), "MISTUDIO_DISK_RESERVE_MB": "1"}
    yield from started_demo(tmp_path_factory, "disk", **env)


@pytest.fixture(scope="module")
def activation_set(app: Appliance) -> dict:
    return demo_activations(app, LAYER, hook_types=["residual"], batch_size=32, max_samples=200, context_length=64)[1]


@contextmanager
def small_disk(path: Path, size_mb: int, inodes: int | None = None) -> Iterator[Path]:
    """A tmpfs of ``size_mb`` (and ``inodes`` files and folders, its root included) mounted at ``path``."""
    path.mkdir(parents=True, exist_ok=True)
    options = f"size={size_mb}m" + (f",nr_inodes={inodes}" if inodes else "")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True, text=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs to simulate a small disk (needs root): {mounted.stderr.strip()}")
    try:
        yield path
    finally:
        if subprocess.run(["umount", str(path)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(path)], check=True)


def start_training(app: Appliance, act: dict, auto_save_interval: int, **hp) -> dict:
    body = {
        "activation_id": act["id"],
        "layer": LAYER,
        "encoder_type": "topk",
        "seed": 5,
        "auto_save_interval": auto_save_interval,
        "hyperparameters": {
            "k": 8,
            "expansion_factor": 4,
            "batch_size": 64,
            "learning_rate": 3e-3,
            "warmup_steps": 2,
            "log_every": 4,
            **hp,
        },
    }
    response = app.post("/api/training/start", json=body)
    assert response.status_code == 202, response.text
    return response.json()["data"]


def saved(app: Appliance, job_id: str) -> dict[int, dict]:
    """step -> the last training.checkpoint event for it (a stop rewrites the checkpoint at its step)."""
    events = app.get(f"/api/jobs/{job_id}/events", params={"format": "json"}).json()["data"]
    return {e["data"]["step"]: e["data"] for e in events if e["type"] == "training.checkpoint"}


def bounded_set(events: dict[int, dict]) -> list[int]:
    """What pruning must leave: the newest KEEP, the lowest held-out loss, the user's own."""
    steps = sorted(events)
    best = min(steps, key=lambda s: (events[s]["held_out_loss"], s))
    return sorted(set(steps[-KEEP:]) | {best} | {s for s in steps if events[s]["kind"] == "user"})


def on_disk(app: Appliance, training_id: str) -> list[str]:
    return sorted(p.name for p in (app.data_dir / "trainings" / training_id / "checkpoints").iterdir())


def test_checkpoints_are_pruned_to_the_newest_the_best_and_the_users_own(app: Appliance, activation_set: dict) -> None:
    # A checkpoint at every step: only the newest KEEP and the best held-out one stay.
    job = start_training(app, activation_set, auto_save_interval=1, total_steps=16)
    done = app.wait_status(job["job_id"], "completed", "failed", timeout=300)
    assert done["status"] == "completed", done["error"]
    tid = done["target"]["id"]
    events = saved(app, job["job_id"])
    assert sorted(events) == list(range(1, 17))
    expected = bounded_set(events)
    listed = app.get(f"/api/training/{tid}/checkpoints").json()["data"]
    assert [c["step"] for c in listed] == expected and len(expected) in (KEEP, KEEP + 1), (listed, events)
    assert all(c["held_out_loss"] == events[c["step"]]["held_out_loss"] for c in listed)
    assert on_disk(app, tid) == [f"step_{s:08d}" for s in expected]

    # Back to the newest but one with a stale partial write beside it: the resumed run sweeps it,
    # continues from there and keeps the set bounded.
    back = expected[-2]
    assert app.post(f"/api/training/{tid}/checkpoints/{back}/load").status_code == 200
    stale = app.data_dir / "trainings" / tid / "checkpoints" / "step_00000099.partial"
    stale.mkdir()
    (stale / "sae.safetensors").write_bytes(b"\0" * 1000)
    resumed = app.post(f"/api/training/{tid}/resume").json()["data"]
    done = app.wait_status(resumed["job_id"], "completed", "failed", timeout=300)
    assert done["status"] == "completed", done["error"]
    assert not stale.exists()
    assert [c["step"] for c in app.get(f"/api/training/{tid}/checkpoints").json()["data"]][-KEEP:] == [15, 16]

    # "Save now" checkpoints are the user's: they stay outside the bound.
    job = start_training(app, activation_set, auto_save_interval=1, total_steps=100_000)
    tid = app.job(job["job_id"])["target"]["id"]
    wait_until(lambda: app.get(f"/api/training/{tid}").json()["data"]["step"] >= 3, timeout=120, what="step 3")
    assert app.post(f"/api/training/{tid}/checkpoints").status_code == 202
    wait_until(
        lambda: any(c["kind"] == "user" for c in app.get(f"/api/training/{tid}/checkpoints").json()["data"]),
        timeout=60,
        what="the user's checkpoint",
    )
    mine = [c["step"] for c in app.get(f"/api/training/{tid}/checkpoints").json()["data"] if c["kind"] == "user"]
    first = app.get(f"/api/training/{tid}").json()["data"]["step"]
    wait_until(
        lambda: app.get(f"/api/training/{tid}").json()["data"]["step"] >= first + 2 * KEEP + 2,
        timeout=120,
        what="more steps",
    )
    assert app.post(f"/api/training/{tid}/stop").status_code == 200
    assert app.wait_status(job["job_id"], "completed", "failed", timeout=120)["status"] == "completed"
    events = saved(app, job["job_id"])
    listed = app.get(f"/api/training/{tid}/checkpoints").json()["data"]
    assert [c["step"] for c in listed] == bounded_set(events) and set(mine) <= {c["step"] for c in listed}
    assert listed[-1]["kind"] == "stop"
    assert not [p for p in on_disk(app, tid) if p.endswith(".partial")]


def test_a_full_disk_fails_the_training_with_insufficient_storage_and_leaves_no_partial(
    app: Appliance, activation_set: dict
) -> None:
    trainings = app.data_dir / "trainings"
    # A real ENOSPC: room for the training's folders and two checkpoints (four entries each), then
    # the third checkpoint's folder, and its weights file no longer fits (safetensors: "os error 28").
    with small_disk(trainings, size_mb=64, inodes=3 + 2 * 4 + 1):
        job = start_training(app, activation_set, auto_save_interval=1, total_steps=50)
        failed = app.wait_status(job["job_id"], "completed", "failed", timeout=300)
        tid = failed["target"]["id"]
        assert failed["status"] == "failed" and failed["error"]["code"] == "INSUFFICIENT_STORAGE", failed
        assert "filled up while writing the checkpoint at step 3" in failed["error"]["message"], failed["error"]
        assert "SafetensorError" not in failed["error"]["message"]
        assert on_disk(app, tid) == ["step_00000001", "step_00000002"]
        training = app.get(f"/api/training/{tid}").json()["data"]
        assert training["status"] == "failed" and "filled up" in training["error"]
        assert [c["step"] for c in app.get(f"/api/training/{tid}/checkpoints").json()["data"]] == [1, 2]

    # Checked before writing: 5 MB hold two checkpoints of this SAE (weights and Adam's state, about
    # 1.6 MB) but not a third beside the 1 MB reserve.
    with small_disk(trainings, size_mb=5):
        job = start_training(app, activation_set, auto_save_interval=1, total_steps=50)
        failed = app.wait_status(job["job_id"], "completed", "failed", timeout=300)
        tid = failed["target"]["id"]
        assert failed["status"] == "failed" and failed["error"]["code"] == "INSUFFICIENT_STORAGE", failed
        assert "Not enough disk space for the checkpoint" in failed["error"]["message"], failed["error"]
        names = on_disk(app, tid)
        assert names and not [n for n in names if n.endswith(".partial")]
        assert app.get(f"/api/training/{tid}").json()["data"]["status"] == "failed"


# -- SAE zips ------------------------------------------------------------------------------------


def _zip(members: list[tuple[str, bytes, int, int]]) -> bytes:
    """A zip of (name, raw deflate stream, crc32, declared size) members, built by hand so a test can
    make one that declares what it likes without compressing gigabytes."""
    local, central = b"", b""
    for name, data, crc, size in members:
        encoded = name.encode()
        central += (
            struct.pack(
                "<IHHHHHHIIIHHHHHII",
                0x02014B50,
                20,
                20,
                0,
                8,
                0,
                0x21,
                crc,
                len(data),
                size,
                len(encoded),
                0,
                0,
                0,
                0,
                0,
                len(local),
            )
            + encoded
        )
        local += (
            struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 8, 0, 0x21, crc, len(data), size, len(encoded), 0)
            + encoded
            + data
        )
    return (
        local
        + central
        + struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(members), len(members), len(central), len(local), 0)
    )


def _zeros(megabytes: int) -> tuple[bytes, int]:
    """(raw deflate stream, crc32) of ``megabytes`` MB of zeros: after a full flush every megabyte
    compresses to the same bytes, so the stream is one block repeated."""
    chunk = b"\0" * MB
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = compressor.compress(chunk) + compressor.flush(zlib.Z_FULL_FLUSH)
    crc = 0
    for _ in range(megabytes):
        crc = zlib.crc32(chunk, crc)
    return block * megabytes + compressor.flush(), crc


def _files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file() and not p.name.startswith("mistudio.db")}


def _upload(app: Appliance, model_id: str, content: bytes):
    return app.post(
        "/api/training/import/upload",
        files={"file": ("sae.zip", content)},
        data={"model_id": model_id, "layer": str(LAYER)},
    )


def test_zip_bombs_are_refused_and_unpack_no_more_than_an_sae_needs(app: Appliance) -> None:
    model, _ = demo_kit(app)
    trainings = app.data_dir / "trainings"
    with small_disk(trainings, size_mb=64):
        before_files, before_rows = _files(app.data_dir), len(app.get("/api/training/").json()["data"])

        # 1.2 GB of zeros in 1.2 MB: more than the widest SAE of this 128-wide model (2**20 latents,
        # fp32: about 1 GB) can need. Refused at upload, before anything is queued or unpacked.
        data, crc = _zeros(1200)
        error = assert_error(
            _upload(app, model["id"], _zip([("sae/cfg.json", data, crc, 1200 * MB)])), 400, "VALIDATION_ERROR"
        )
        assert "largest SAE" in error["message"] and error["details"]["limit_bytes"] < 1200 * MB, error

        # 200 MB of zeros in 200 KB: an SAE could be that large, but the disk (64 MB) has no room for it.
        data, crc = _zeros(200)
        error = assert_error(
            _upload(app, model["id"], _zip([("sae/cfg.json", data, crc, 200 * MB)])), 507, "INSUFFICIENT_STORAGE"
        )
        assert "unpacking the SAE" in error["message"], error
        assert _files(app.data_dir) == before_files
        assert len(app.get("/api/training/").json()["data"]) == before_rows

        # The same 200 MB behind a header that declares 1 KB: accepted, then the worker stops at the
        # declared size, finds the checksum wrong and removes what it wrote.
        response = _upload(app, model["id"], _zip([("sae/sae_weights.safetensors", data, crc, 1024)]))
        assert response.status_code == 202, response.text
        job = app.wait_status(response.json()["data"]["job_id"], "completed", "failed", timeout=120)
        assert job["status"] == "failed" and job["error"]["code"] == "VALIDATION_ERROR", job
        assert "sizes do not match" in job["error"]["message"], job["error"]
        assert not (trainings / job["target"]["id"]).exists()
        assert _files(app.data_dir) == before_files
        assert app.get(f"/api/training/{job['target']['id']}").json()["data"]["status"] == "failed"
