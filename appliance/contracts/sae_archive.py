"""An uploaded SAE zip, unpacked within what an import can need: the weights of the largest SAE the
model allows, and the free space. The API refuses an archive whose declared sizes are too large
before it queues the import; the worker unpacks it counting the bytes it actually writes (a zip's
headers are the attacker's to set) and stops, removing what it wrote, at the same limits.
Light: no torch (the API uses it)."""

from __future__ import annotations

import shutil
import zipfile
import zlib
from pathlib import Path

from appliance.contracts.hyperparameters import MAX_D_SAE, MAX_EXPANSION
from appliance.data.storage import free_bytes, is_disk_full, require_free, storage_error
from appliance.errors import InsufficientStorage, ValidationError

# An SAE is a config and one or two weight files; a sparsify repo holds two files per hook point.
MAX_MEMBERS = 1000
# cfg.json, sparsity and thresholds files, READMEs, safetensors headers
MARGIN_BYTES = 64 * 2**20
_CHUNK = 1 << 20


def max_unpacked_bytes(d_model: int) -> int:
    """The largest SAE the appliance accepts for a model of width ``d_model``: the most latents a
    training may have, an fp32 encoder and decoder, a skip (or transcoder) matrix and the
    per-latent vectors (encoder bias, threshold, sparsity), plus small files."""
    latents = max(MAX_D_SAE, MAX_EXPANSION * d_model)
    return 4 * (2 * d_model * latents + d_model * d_model + 3 * latents + 2 * d_model) + MARGIN_BYTES


def _members(zipped: zipfile.ZipFile) -> list[zipfile.ZipInfo]:
    infos = zipped.infolist()
    if len(infos) > MAX_MEMBERS:
        raise ValidationError(
            f"The zip holds {len(infos):,} entries; an SAE needs a few (at most {MAX_MEMBERS:,})",
            details={"field": "file"},
        )
    members = [m for m in infos if not m.is_dir()]
    for member in members:
        name = Path(member.filename.replace("\\", "/"))
        if name.is_absolute() or ".." in name.parts:
            raise ValidationError(f"Unsafe path in the zip: {member.filename}", details={"field": "file"})
    return members


def _too_large(size: int, limit: int, d_model: int) -> ValidationError:
    return ValidationError(
        f"The zip unpacks to more than {limit / 2**20:,.0f} MB, more than the largest SAE a model of width "
        f"{d_model} can have (plus {MARGIN_BYTES // 2**20} MB for small files): it is not an SAE of this model",
        details={"field": "file", "unpacked_bytes": size, "limit_bytes": limit},
    )


def check_declared(archive: Path, d_model: int, dest: Path, reserve_mb: int) -> None:
    """Refuse, before anything is unpacked, a zip that is not one, holds too many entries or unsafe
    paths, or declares more bytes than an SAE of this model needs or the disk has free."""
    try:
        with zipfile.ZipFile(archive) as zipped:
            members = _members(zipped)
    except zipfile.BadZipFile:
        raise ValidationError("The upload is not a zip file", details={"field": "file"}) from None
    declared = sum(m.file_size for m in members)
    limit = max_unpacked_bytes(d_model)
    if declared > limit:
        raise _too_large(declared, limit, d_model)
    require_free(dest, declared, reserve_mb, "unpacking the SAE")


def unpack(archive: Path, dest: Path, d_model: int, reserve_mb: int) -> None:
    """Unpack ``archive`` into ``dest`` after check_declared, counting the bytes written against the
    SAE limit and the free space (less the reserve); on any failure ``dest`` is removed."""
    check_declared(archive, d_model, dest, reserve_mb)
    limit = max_unpacked_bytes(d_model)
    room = free_bytes(dest) - reserve_mb * 2**20
    written = 0
    try:
        with zipfile.ZipFile(archive) as zipped:
            for member in _members(zipped):
                target = dest / Path(member.filename.replace("\\", "/"))
                target.parent.mkdir(parents=True, exist_ok=True)
                with zipped.open(member) as src, open(target, "wb") as out:
                    while chunk := src.read(_CHUNK):
                        written += len(chunk)
                        if written > limit:
                            raise _too_large(written, limit, d_model)
                        if written > room:
                            raise InsufficientStorage(
                                f"The data disk filled up while unpacking the SAE ({written / 2**20:,.0f} MB so far); "
                                "nothing was kept. Free space and import it again.",
                                details={"unpacked_bytes": written, "reserve_mb": reserve_mb},
                            )
                        out.write(chunk)
    except BaseException as exc:
        shutil.rmtree(dest, ignore_errors=True)
        if isinstance(exc, (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError)):
            # zipfile stops a member at its declared size and then finds the checksum wrong: a header
            # that understates what follows is refused here.
            raise ValidationError(
                f"The zip is damaged or its sizes do not match its contents: {exc}", details={"field": "file"}
            ) from None
        if is_disk_full(exc):
            raise storage_error(exc, "the unpacked SAE", dest.parent) from exc
        raise
