"""Rules every resource shares: find a row or answer 404; refuse to delete what others use."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

from appliance.api.validation import check_id
from appliance.data import activation_sets, datasets, models, trainings
from appliance.data.database import AsyncDatabase, Query, Row
from appliance.errors import Conflict, NotFound
from appliance.services.names import KIND_WORDS, dependent_name

Named = Literal["model", "dataset", "activation set", "training"]
# What a request names by id: the query that finds it, its ids' prefix and the request field that names it.
_BY_ID: dict[Named, tuple[Callable[[str], Query], str, str]] = {
    "model": (models.get, "m", "model_id"),
    "dataset": (datasets.get, "ds", "dataset_id"),
    "activation set": (activation_sets.get, "act", "activation_id"),
    "training": (trainings.get, "tr", "training_id"),
}


async def get_or_404(db: AsyncDatabase, query: Query, what: str, value: str, field: str) -> Row:
    """The row ``query`` finds, or NOT_FOUND naming ``field`` (e.g. "No training 'tr_x'")."""
    row = await db.one(query)
    if row is None:
        raise NotFound(f"No {what} {value!r}", details={field: value})
    return row


async def named_row(db: AsyncDatabase, what: Named, value: str) -> Row:
    """The row of the resource a request names by id: VALIDATION_ERROR for an id of the wrong shape,
    NOT_FOUND for one that names nothing, each naming the request's field."""
    get, prefix, field = _BY_ID[what]
    return await get_or_404(db, get(check_id(value, prefix, field)), what, value, field)


def tokenizer_of(model: Row) -> str:
    """The tokenizer a model's jobs name: "demo" for the demo model, else the one stored with the model."""
    return "demo" if model["source"] == "demo" else str(model["id"])


def row_error(row: Row) -> dict[str, str] | None:
    """A resource's failure as clients see it (code and message), None while it has none."""
    return {"code": row["error_code"], "message": row["error_message"] or ""} if row["error_code"] else None


def checked_id(value: str, prefix: str, field: str) -> str:
    """``value`` if it has the shape of an id of this kind (else a VALIDATION_ERROR naming ``field``)."""
    return check_id(value, prefix, field)


def refuse_if_used(what: str, dependents: Sequence[Row]) -> None:
    """The one delete policy: a resource others are built on is not deleted under them. ``what`` names
    the resource ('Model "tiny-stories"'); ``dependents`` are the rows of its ``dependents`` query. All
    of them are named, grouped by kind: 'Model "x" is used by 2 activation sets ("L2 residual", "L0-3
    mlp_out") and 1 training ("topk k=32 L2 residual"): delete those first.' ``details.dependents`` has
    each one's kind, id and name."""
    if not dependents:
        return
    named = [{"kind": row["kind"], "id": row["id"], "name": dependent_name(row)} for row in dependents]
    groups: dict[str, list[str]] = {}
    for dependent in named:
        groups.setdefault(dependent["kind"], []).append(f'"{dependent["name"]}"')
    parts = []
    for kind, names in groups.items():
        one, many = KIND_WORDS.get(kind, (kind, kind + "s"))
        parts.append(f"{len(names)} {one if len(names) == 1 else many} ({', '.join(names)})")
    listed = ", ".join(parts[:-1]) + f" and {parts[-1]}" if len(parts) > 1 else parts[0]
    raise Conflict(
        f"{what} is used by {listed}: delete {'it' if len(named) == 1 else 'those'} first.",
        details={"used_by": [row["id"] for row in dependents], "dependents": named},
    )


def refuse_if_busy(what: str, job_id: str | None, status: str, busy: Sequence[str]) -> None:
    """A resource a job is still working on is not deleted or changed under it."""
    if status in busy:
        raise Conflict(
            f"{what} is {status}" + (f" by job {job_id}" if job_id else "") + ": cancel or stop it first",
            details={"status": status, **({"job_id": job_id} if job_id else {})},
        )
