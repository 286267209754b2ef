"""What the files in the data dir take: sizes read from the disk (os.scandir walks, no links followed),
for the storage view. Sizes are the files' own (``st_size``, what ``du --apparent-size`` counts): the
Hub cache links its snapshots to its blobs, so not following links counts each blob once."""

from __future__ import annotations

import os
import shutil
from pathlib import Path


def tree_bytes(path: Path) -> int:
    """Bytes of the files under ``path`` (or of ``path`` itself, a file); 0 for one that does not exist.
    A file removed while the walk runs (a job pruning, a partial write renamed) is simply not counted."""
    try:
        if not path.is_dir() or path.is_symlink():
            return path.stat(follow_symlinks=False).st_size if path.is_file() else 0
    except OSError:
        return 0
    total = 0
    pending = [str(path)]
    while pending:
        try:
            with os.scandir(pending.pop()) as entries:
                for entry in entries:
                    try:
                        if entry.is_dir(follow_symlinks=False):
                            pending.append(entry.path)
                        elif entry.is_file(follow_symlinks=False):
                            total += entry.stat(follow_symlinks=False).st_size
                    except OSError:
                        continue
        except OSError:
            continue
    return total


def children(path: Path) -> list[str]:
    """The names of the entries directly under ``path`` (a folder), sorted; empty when there is none."""
    try:
        return sorted(entry.name for entry in os.scandir(path))
    except OSError:
        return []


def children_bytes(path: Path) -> dict[str, int]:
    """Each entry directly under ``path`` (a folder) and the bytes under it; empty when there is none."""
    return {name: tree_bytes(path / name) for name in children(path)}


def newest_change(path: Path) -> float:
    """The latest modification time of ``path`` and of anything under it (0.0 when it does not exist):
    an upload still arriving keeps growing its file."""
    newest = 0.0
    pending = [path]
    while pending:
        current = pending.pop()
        try:
            newest = max(newest, current.stat(follow_symlinks=False).st_mtime)
            if current.is_dir() and not current.is_symlink():
                pending.extend(current.iterdir())
        except OSError:
            continue
    return newest


def remove(path: Path) -> None:
    """Delete a folder or file; one already gone is fine."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
