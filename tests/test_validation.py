"""Client-supplied identifiers and paths: ids must match their prefix; paths must stay in their root."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from appliance.api.validation import check_id, safe_path
from appliance.errors import ValidationError
from appliance.ids import new_id


def test_ids() -> None:
    job_id = new_id("job")
    assert check_id(job_id, "job", "job_id") == job_id
    for bad in ("ds_abcdefgh", "job_short", "job_../../etc", "job_abcdefgh/x", "", "job_" + "a" * 65):
        with pytest.raises(ValidationError):
            check_id(bad, "job", "job_id")
    with pytest.raises(ValueError):
        new_id("nope")


def test_safe_path_stays_inside_its_root(tmp_path: Path) -> None:
    root = tmp_path / "imports"
    (root / "sub").mkdir(parents=True)
    (root / "sub/data.jsonl").write_text("{}\n")
    os.symlink("/etc", root / "escape")
    assert safe_path(root, "sub/data.jsonl", "path") == (root / "sub/data.jsonl").resolve()
    assert safe_path(root, "./sub/../sub/data.jsonl", "path") == (root / "sub/data.jsonl").resolve()
    for bad in ("../secret", "sub/../../x", "/etc/passwd", "escape/passwd", "a\x00b"):
        with pytest.raises(ValidationError) as info:
            safe_path(root, bad, "path")
        assert info.value.details["field"] == "path"
