"""Checks on identifiers and paths that come from clients."""

from __future__ import annotations

import os
from pathlib import Path

from appliance.errors import ValidationError
from appliance.ids import is_valid_id


def check_id(value: str, prefix: str, field: str) -> str:
    if not is_valid_id(value, prefix):
        raise ValidationError(
            f"{field} must look like '{prefix}_' followed by 8-64 letters, digits, '-' or '_'",
            details={"field": field, "value": value[:100]},
        )
    return value


_PATH_MAX = 4096  # Linux's limit on a whole path


def _name_max(base: Path) -> int:
    """The longest file name (in bytes) the file system under ``base`` holds; 255 on every common one."""
    try:
        return os.pathconf(base, "PC_NAME_MAX")
    except (OSError, ValueError):
        return 255


def safe_path(base: Path, user_path: str, field: str) -> Path:
    """Resolve ``user_path`` inside ``base``; anything that escapes it (.., absolute paths, links out)
    is a validation error."""
    if "\x00" in user_path:
        raise ValidationError(f"{field} contains a NUL byte", details={"field": field})
    # A name the file system cannot hold makes every later stat() raise ENAMETOOLONG; refuse it here,
    # where the client's mistake is still a client's mistake.
    name_max = _name_max(base)
    too_long = next((part for part in Path(user_path).parts if len(os.fsencode(part)) > name_max), None)
    if too_long is not None:
        raise ValidationError(
            f"{field} has a name longer than the file system allows", details={"field": field, "value": too_long[:100]}
        )
    root = base.resolve()
    try:
        candidate = (root / user_path).resolve()
    except OSError as exc:  # ENAMETOOLONG for a whole path past PATH_MAX, ELOOP for a link cycle
        raise ValidationError(
            f"{field} cannot be resolved: {exc.strerror}", details={"field": field, "value": user_path[:200]}
        ) from None
    if len(os.fsencode(str(candidate))) > _PATH_MAX:
        raise ValidationError(f"{field} is longer than the file system allows", details={"field": field})
    if candidate != root and root not in candidate.parents:
        raise ValidationError(
            f"{field} must stay inside {root.name}/", details={"field": field, "value": user_path[:200]}
        )
    return candidate
