"""Where the data disk went: every byte of the data dir attributed once, to a dataset, model, activation
set or training (its own folders and its upload), to a cache entry (Hub downloads, unfinished model
downloads, uploads no resource owns, leftovers of deleted resources) or to the appliance's own files
(database, job queue, imports folder); largest first. Sizes come from the files (a walk in a thread:
data/disk_usage.py), never from the rows, so what the view shows is what deleting frees.

Deleting a resource goes through its own DELETE endpoint (one dependency rule for the tabs and this
view); the two prunes are here: a training's older checkpoints (kept: the newest, the best held-out one,
the user's own: the same rule as the automatic bound, contracts/checkpoint_retention.py) and a cache
entry. Neither touches what a queued or running job uses."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import msgspec
from anyio import to_thread

from appliance.contracts.checkpoint_retention import Saved, kept_steps
from appliance.data import activation_sets, datasets, models, trainings
from appliance.data import jobs as jobs_sql
from appliance.data.database import AsyncDatabase, Row
from appliance.data.disk_usage import children, children_bytes, newest_change, remove, tree_bytes
from appliance.data.layout import DataLayout
from appliance.errors import Conflict, NotFound
from appliance.services.common import named_row
from appliance.services.names import activation_set_name, dependent_name, training_name

Kind = Literal["dataset", "model", "activation_set", "training", "cache", "other"]

# Jobs that write the Hub or datasets-library caches (cache/huggingface, cache/model-downloads): while one
# is queued or running no cache entry is removed under it.
_CACHE_WRITERS = frozenset({"dataset.download", "dataset.import", "dataset.demo", "model.download", "training.import"})
# An upload whose import job does not exist yet is still arriving: its file keeps changing. One left alone
# this long is a leftover (the API's start sweeps those too).
_UPLOAD_QUIET_S = 600.0
_RUNNING = ("queued", "running")


# -- what clients see ------------------------------------------------------------------------------
class StorageDisk(msgspec.Struct):
    path: str  # the data dir
    total_bytes: int
    used_bytes: int  # by anything on the filesystem, the appliance's files among them
    free_bytes: int  # what the appliance may still write, its reserve included
    reserve_bytes: int  # MISTUDIO_DISK_RESERVE_MB: kept free; a write that would take it is refused
    data_bytes: int  # the data dir's files: the items' sum


class StoragePart(msgspec.Struct):
    name: str  # "checkpoints", "export", "features", "samples", "tokenized (model)", "upload", "other"...
    bytes: int
    count: int | None = None  # how many the part holds, where that means something (checkpoints)


class StorageDependent(msgspec.Struct):
    kind: str  # "activation_set" | "training"
    id: str
    name: str


class StorageItem(msgspec.Struct):
    kind: Kind
    id: str | None  # None for cache entries and the appliance's own files
    name: str
    path: str  # relative to the data dir: the folder (for a resource its main one); a cache prune names it
    bytes: int
    parts: list[StoragePart]  # the biggest first; empty where a split means nothing
    used_by: list[StorageDependent]  # what its DELETE would refuse for, named
    # What a prune frees now: a training's older checkpoints (and partial writes), a cache entry's all.
    reclaimable_bytes: int = 0
    # Why a prune is refused now (a queued or running job uses it); None when it is not.
    busy: str | None = None


class Storage(msgspec.Struct):
    disk: StorageDisk
    items: list[StorageItem]  # largest first


class StoragePruned(msgspec.Struct):
    freed_bytes: int
    removed: list[str]  # paths relative to the data dir


# -- what clients send -----------------------------------------------------------------------------
class CachePruneRequest(msgspec.Struct, forbid_unknown_fields=True):
    path: Annotated[str, msgspec.Meta(min_length=1, max_length=1000)]  # a cache entry's path, as listed


# -- the database's side, read once per answer ------------------------------------------------------
@dataclass(frozen=True)
class _Snapshot:
    datasets: list[Row]
    models: list[Row]
    activation_sets: list[Row]
    trainings: list[Row]
    dependents: dict[str, list[StorageDependent]]  # resource id -> what is built on it, named as a refusal names it
    jobs: list[Row]  # queued, running or paused

    def names(self) -> dict[str, str]:
        found = {row["id"]: row["name"] for row in (*self.datasets, *self.models)}
        for row in self.activation_sets:
            found[row["id"]] = _set_name(row, found)
        for row in self.trainings:
            found[row["id"]] = _training_name(row, found)
        return found

    def job_on(self, resource_id: str, statuses: Iterable[str] = _RUNNING) -> Row | None:
        wanted = set(statuses)
        return next((j for j in self.jobs if j["target_id"] == resource_id and j["status"] in wanted), None)

    def cache_writer(self) -> Row | None:
        return next((j for j in self.jobs if j["kind"] in _CACHE_WRITERS and j["status"] in _RUNNING), None)


async def _snapshot(db: AsyncDatabase) -> _Snapshot:
    rows = {
        "datasets": await db.all(datasets.list_all()),
        "models": await db.all(models.list_all()),
        "activation_sets": await db.all(activation_sets.list_all()),
        "trainings": await db.all(trainings.list_all()),
    }
    dependents: dict[str, list[StorageDependent]] = {}
    for module, key in ((datasets, "datasets"), (models, "models"), (activation_sets, "activation_sets")):
        for row in rows[key]:
            found = await db.all(module.dependents(row["id"]))
            dependents[row["id"]] = [StorageDependent(r["kind"], r["id"], dependent_name(r)) for r in found]
    live = await db.all(jobs_sql.with_status("queued", "running", "paused"))
    return _Snapshot(**rows, dependents=dependents, jobs=live)


# -- names as the view shows them: the words of a delete refusal (services/names.py), plus the model ---
def _set_name(row: Row, names: dict[str, str]) -> str:
    source = f"{names.get(row['model_id'], row['model_id'])} × {names.get(row['dataset_id'], row['dataset_id'])}"
    return f"{activation_set_name(msgspec.json.decode(row['config']))} · {source}"


def _training_name(row: Row, names: dict[str, str]) -> str:
    config = msgspec.json.decode(row["config"])
    name = training_name(row["encoder_type"], row["layer"], row["hook_type"], config)
    return f"{name} · {names.get(row['model_id'], row['model_id'])}"


def _job_text(job: Row) -> str:
    return f"job {job['id']} ({job['kind']}) is {job['status']}"


# -- the walk ---------------------------------------------------------------------------------------
def _parts(sizes: dict[str, int]) -> list[StoragePart]:
    merged: dict[str, int] = {}
    for name, size in sizes.items():
        merged[name] = merged.get(name, 0) + size
    return sorted((StoragePart(n, b) for n, b in merged.items() if b), key=lambda p: -p.bytes)


def _rel(layout: DataLayout, path: Path) -> str:
    return path.relative_to(layout.root).as_posix()


def _checkpoint_saved(folder: Path) -> Saved:
    step = int(folder.name.split("_")[1].split(".")[0])
    try:
        info = msgspec.json.decode((folder / "info.json").read_bytes(), type=dict[str, object])
    except (OSError, msgspec.DecodeError):
        return Saved(step)
    loss = info.get("held_out_loss")
    return Saved(step, str(info.get("kind", "auto")), float(loss) if isinstance(loss, (int, float)) else None)


def _prunable_checkpoints(folder: Path) -> list[Path]:
    """What a prune removes: the whole checkpoints outside the kept set (kept to one newest) and any
    partial write (a run killed mid-write left it; a resume would sweep it)."""
    found = sorted(folder.glob("step_*"))
    partial = [p for p in found if p.name.endswith(".partial")]
    whole = [p for p in found if not p.name.endswith(".partial")]
    saved = {p: _checkpoint_saved(p) for p in whole}
    kept = kept_steps(list(saved.values()), keep=1)
    return [p for p in whole if saved[p].step not in kept] + partial


def _upload_part(layout: DataLayout, resource_id: str) -> dict[str, int]:
    return {"upload": tree_bytes(layout.upload(resource_id))}


def _dataset(layout: DataLayout, row: Row, names: dict[str, str]) -> tuple[int, list[StoragePart]]:
    sizes: dict[str, int] = {}
    for child, size in children_bytes(layout.dataset(row["id"])).items():
        if child == "tokenized":
            for tokenizer, tokenized in children_bytes(layout.dataset(row["id"]) / child).items():
                sizes[f"tokenized ({names.get(tokenizer, tokenizer)})"] = tokenized
        else:
            part = {"arrow": "samples", "cache": "download cache"}.get(child, "other")
            sizes[part] = sizes.get(part, 0) + size
    sizes.update(_upload_part(layout, row["id"]))
    parts = _parts(sizes)
    return sum(p.bytes for p in parts), parts


# A training's folders as parts; a feature pass still running writes features.partial.
_TRAINING_PARTS = {
    "checkpoints": "checkpoints",
    "export": "export",
    "features": "features",
    "features.partial": "features",
}


def _training(layout: DataLayout, row: Row) -> tuple[int, list[StoragePart], int]:
    sizes: dict[str, int] = {}
    for child, size in children_bytes(layout.training(row["id"])).items():
        name = _TRAINING_PARTS.get(child, "other")
        sizes[name] = sizes.get(name, 0) + size
    checkpoints = layout.checkpoints(row["id"])
    count = sum(1 for p in checkpoints.glob("step_*") if not p.name.endswith(".partial"))
    reclaimable = sum(tree_bytes(p) for p in _prunable_checkpoints(checkpoints))
    sizes.update(_upload_part(layout, row["id"]))
    parts = _parts(sizes)
    for part in parts:
        if part.name == "checkpoints":
            part.count = count
    return sum(p.bytes for p in parts), parts, reclaimable


def _resources(layout: DataLayout, snap: _Snapshot) -> list[StorageItem]:
    names = snap.names()

    def used_by(resource_id: str) -> list[StorageDependent]:
        return snap.dependents.get(resource_id, [])

    items = []
    for row in snap.datasets:
        size, parts = _dataset(layout, row, names)
        path = _rel(layout, layout.dataset(row["id"]))
        items.append(StorageItem("dataset", row["id"], names[row["id"]], path, size, parts, used_by(row["id"])))
    for row in snap.models:
        size = tree_bytes(layout.model(row["id"]))
        path = _rel(layout, layout.model(row["id"]))
        items.append(StorageItem("model", row["id"], names[row["id"]], path, size, [], used_by(row["id"])))
    for row in snap.activation_sets:
        size = tree_bytes(layout.activations(row["id"]))
        path = _rel(layout, layout.activations(row["id"]))
        items.append(StorageItem("activation_set", row["id"], names[row["id"]], path, size, [], used_by(row["id"])))
    for row in snap.trainings:
        size, parts, reclaimable = _training(layout, row)
        job = snap.job_on(row["id"])
        path = _rel(layout, layout.training(row["id"]))
        items.append(
            StorageItem(
                "training",
                row["id"],
                names[row["id"]],
                path,
                size,
                parts,
                [],
                reclaimable,
                _job_text(job) if job is not None else None,
            )
        )
    return items


def _hub_name(folder: str) -> str:
    """ "models--org--name" -> "org/name (model)"; anything else as it is."""
    kind, _, repo = folder.partition("--")
    if repo and kind in ("models", "datasets", "spaces"):
        return f"{repo.replace('--', '/')} ({kind[:-1]})"
    return folder


def _cache_entries(layout: DataLayout, snap: _Snapshot, now: float) -> list[StorageItem]:
    """Everything no resource owns that a prune may remove, each with why not now (``busy``)."""
    writer = snap.cache_writer()
    cache_busy = _job_text(writer) if writer is not None else None
    found: list[tuple[Path, str, int, str | None]] = []
    for child, size in children_bytes(layout.cache).items():
        path = layout.cache / child
        if path == layout.hf_home:
            for entry, entry_size in children_bytes(path).items():
                if entry == "hub":
                    for repo, repo_size in children_bytes(path / entry).items():
                        found.append(
                            (path / entry / repo, f"Hub download cache: {_hub_name(repo)}", repo_size, cache_busy)
                        )
                else:
                    found.append((path / entry, f"Hugging Face cache: {entry}", entry_size, cache_busy))
        elif path == layout.model_downloads:
            for repo, repo_size in children_bytes(path).items():
                name = f"Unfinished model download: {repo.replace('--', '/')}"
                found.append((path / repo, name, repo_size, cache_busy))
        else:
            found.append((path, f"Cache: {child}", size, cache_busy))

    owners = {row["id"] for row in (*snap.datasets, *snap.models, *snap.activation_sets, *snap.trainings)}
    for child in children(layout.uploads):
        if child in owners:
            continue  # counted with its resource
        size = tree_bytes(layout.uploads / child)
        job = snap.job_on(child, ("queued", "running", "paused"))
        arriving = now - newest_change(layout.uploads / child) < _UPLOAD_QUIET_S
        busy = _job_text(job) if job is not None else "it is still arriving" if arriving else None
        found.append((layout.uploads / child, f"Upload no resource owns: {child}", size, busy))
    roots = (
        (layout.datasets, "dataset"),
        (layout.models, "model"),
        (layout.activation_sets, "activation set"),
        (layout.trainings, "training"),
    )
    for root, what in roots:
        for child in children(root):
            if child not in owners:  # an owned folder is sized with its resource
                job = snap.job_on(child, ("queued", "running", "paused"))
                busy = _job_text(job) if job is not None else None
                name = f"Leftover files of a deleted {what}: {child}"
                found.append((root / child, name, tree_bytes(root / child), busy))
    return [
        StorageItem("cache", None, name, _rel(layout, path), size, [], [], size, busy)
        for path, name, size, busy in found
        if size
    ]


# The appliance's own files at the top of the data dir (never pruned); what is not named here or owned
# above is listed by its own name.
_OWN = {
    "mistudio.db": "Database",
    "mistudio.db-wal": "Database",
    "mistudio.db-shm": "Database",
    "queue.db": "Job queue",
    "queue.db-wal": "Job queue",
    "queue.db-shm": "Job queue",
    "imports": "Imports folder (your files to import)",
    "secrets": "Other appliance files",
    "worker.lock": "Other appliance files",
}


def _other(layout: DataLayout) -> list[StorageItem]:
    handled = {p.name for p in (layout.datasets, layout.models, layout.activation_sets, layout.trainings)}
    handled |= {layout.cache.name, layout.uploads.name}
    grouped: dict[str, tuple[str, int]] = {}
    for child in children(layout.root):
        if child in handled:
            continue
        name = _OWN.get(child, child)
        path, total = grouped.get(name, (child, 0))
        grouped[name] = (path, total + tree_bytes(layout.root / child))
    return [StorageItem("other", None, name, path, size, [], []) for name, (path, size) in grouped.items() if size]


def _scan(layout: DataLayout, reserve_mb: int, snap: _Snapshot) -> Storage:
    items = [*_resources(layout, snap), *_cache_entries(layout, snap, time.time()), *_other(layout)]
    items.sort(key=lambda item: (-item.bytes, item.kind, item.name))
    usage = shutil.disk_usage(layout.root)
    disk = StorageDisk(
        path=str(layout.root),
        total_bytes=usage.total,
        used_bytes=usage.used,
        free_bytes=usage.free,
        reserve_bytes=reserve_mb * 1024 * 1024,
        data_bytes=sum(item.bytes for item in items),
    )
    return Storage(disk, items)


# -- operations -------------------------------------------------------------------------------------
async def overview(db: AsyncDatabase, layout: DataLayout, reserve_mb: int) -> Storage:
    """The disk and everything on it, largest first (a walk of the data dir, in a thread)."""
    snap = await _snapshot(db)
    return await to_thread.run_sync(_scan, layout, reserve_mb, snap)


def _removed(layout: DataLayout, paths: list[Path]) -> StoragePruned:
    freed = 0
    for path in paths:
        freed += tree_bytes(path)
        remove(path)
    return StoragePruned(freed, [_rel(layout, p) for p in paths])


async def prune_checkpoints(db: AsyncDatabase, layout: DataLayout, training_id: str) -> StoragePruned:
    """Delete a training's older checkpoints: the newest (what a resume starts from), the one of lowest
    held-out loss and those the user saved stay. Refused while a job of the training is queued or running
    (it writes and prunes checkpoints itself); a paused one resumes from the newest, which stays."""
    row = await named_row(db, "training", training_id)
    job = (await _snapshot_jobs(db)).job_on(row["id"])
    if job is not None:
        raise Conflict(
            f"Training {row['id']} is in use ({_job_text(job)}): prune its checkpoints once it is paused or has ended",
            details={"job_id": job["id"], "status": job["status"]},
        )
    folder = layout.checkpoints(row["id"])
    return await to_thread.run_sync(lambda: _removed(layout, _prunable_checkpoints(folder)))


async def prune_cache(db: AsyncDatabase, layout: DataLayout, path: str) -> StoragePruned:
    """Delete one cache entry, named by the path the overview lists; refused while a job may use it."""
    snap = await _snapshot(db)
    entries = await to_thread.run_sync(_cache_entries, layout, snap, time.time())
    entry = next((e for e in entries if e.path == path), None)
    if entry is None:
        raise NotFound(f"No cache entry {path!r}: GET /api/system/storage lists them", details={"path": path})
    if entry.busy is not None:
        raise Conflict(f"{entry.name} is in use ({entry.busy}): try again when it has ended", details={"path": path})
    return await to_thread.run_sync(_removed, layout, [layout.root / entry.path])


async def _snapshot_jobs(db: AsyncDatabase) -> _Snapshot:
    """Only the live jobs (a checkpoint prune needs nothing else)."""
    live = await db.all(jobs_sql.with_status("queued", "running", "paused"))
    return _Snapshot([], [], [], [], {}, live)
