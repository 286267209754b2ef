"""Extraction templates (a template kind, appliance.services.templates): which layers and hook points
to extract, saved so they fit any model.

Layers are kept as a model-free choice: every layer, or depths (0 = the first layer, 0.5 = the
middle, 1 = the last), which "apply" resolves against the chosen model. Templates saved before depths
existed name absolute layers: applied to a smaller model they are clamped to its last layer. Whatever
had to change to fit the model (a layer it lacks, a hook type it has not, a context longer than it
reads) is said in the applied result's notes, never done silently.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from appliance.api.validation import check_id
from appliance.contracts.params.models import HookType, ModelArchitecture
from appliance.data import app_state, models
from appliance.data import templates as sql
from appliance.data.database import AsyncDatabase
from appliance.errors import NotFound
from appliance.services.models import architecture_of
from appliance.services.templates import ApplyRequest, Kind, checked

Depth = Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]


class ExtractionSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    hook_types: Annotated[list[HookType], msgspec.Meta(min_length=1, max_length=4)]
    # Exactly one of the three says which layers: every one, depths in the model, or absolute indices.
    all_layers: bool = False
    depths: Annotated[list[Depth], msgspec.Meta(min_length=1, max_length=200)] | None = None
    layers: (
        Annotated[list[Annotated[int, msgspec.Meta(ge=0, le=1000)]], msgspec.Meta(min_length=1, max_length=200)] | None
    ) = None
    max_samples: Annotated[int, msgspec.Meta(ge=1)] | None = None
    top_k_examples: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 50
    batch_size: Annotated[int, msgspec.Meta(ge=1, le=512)] = 32
    context_length: Annotated[int, msgspec.Meta(ge=2, le=32768)] = 128

    def __post_init__(self) -> None:
        if sum((self.all_layers, self.depths is not None, self.layers is not None)) != 1:
            raise ValueError("Give exactly one of all_layers, depths (0 = first layer, 1 = last) or layers")


def depth_layer(depth: float, layers: int) -> int:
    """The layer at ``depth`` of a model with ``layers`` layers (0.5 of 4 layers is layer 2, of 12 layer 6)."""
    return int(depth * (layers - 1) + 0.5)


def _listed(numbers: list[int]) -> str:
    return ", ".join(map(str, numbers))


def _layers(settings: ExtractionSettings, count: int) -> tuple[list[int], list[str]]:
    """The absolute layers the settings mean in a model of ``count`` layers, and what had to change."""
    if settings.all_layers:
        return list(range(count)), []
    if settings.depths is not None:
        chosen = sorted({depth_layer(depth, count) for depth in settings.depths})
        if len(chosen) < len(settings.depths):
            plural = "s" if len(chosen) > 1 else ""
            return chosen, [
                f"{len(settings.depths)} depths fall on {len(chosen)} layer{plural} of this {count}-layer model: "
                f"layer{plural} {_listed(chosen)}"
            ]
        return chosen, []
    asked = settings.layers or []
    beyond = sorted({layer for layer in asked if layer >= count})
    chosen = sorted({min(layer, count - 1) for layer in asked})
    if not beyond:
        return chosen, []
    return chosen, [
        f"Layer{'s' if len(beyond) > 1 else ''} {_listed(beyond)} {'are' if len(beyond) > 1 else 'is'} beyond this "
        f"model's layers 0-{count - 1}: layer {count - 1} is used instead"
    ]


def _hook_types(
    settings: ExtractionSettings, arch: ModelArchitecture, layers: list[int]
) -> tuple[list[HookType], list[str]]:
    """The template's hook types that every chosen layer of the model has; the others are left out."""
    have = {(p.layer, p.type) for p in arch.hook_points if not p.after_affine}
    usable = {kind: all((layer, kind) in have for layer in layers) for kind in settings.hook_types}
    kept: list[HookType] = [kind for kind in settings.hook_types if usable[kind]]
    missing = [kind for kind in settings.hook_types if not usable[kind]]
    if not missing:
        return kept, []
    notes = [f"This model has no {' or '.join(missing)} hook points on those layers: left out"]
    if not kept:
        kept = ["residual"]
        notes.append("No hook type of the template fits this model: using the residual stream")
    return kept, notes


def fit_to(settings: ExtractionSettings, arch: ModelArchitecture) -> tuple[dict[str, Any], list[str]]:
    """The settings as an extraction of this model asks for them (absolute layers), and the notes."""
    layers, notes = _layers(settings, arch.layers)
    hook_types, hook_notes = _hook_types(settings, arch, layers)
    context = settings.context_length
    if arch.context_length and context > arch.context_length:
        notes.append(f"Context length {context} is longer than this model reads: {arch.context_length} is used")
        context = arch.context_length
    fitted = {
        "layers": layers,
        "hook_types": hook_types,
        "max_samples": settings.max_samples,
        "top_k_examples": settings.top_k_examples,
        "batch_size": settings.batch_size,
        "context_length": context,
    }
    return fitted, notes + hook_notes


async def _fit(db: AsyncDatabase, config: dict[str, Any], request: ApplyRequest) -> tuple[dict[str, Any], list[str]]:
    settings = msgspec.convert(config, ExtractionSettings)
    if not request.model_id:
        return config, ["Choose a model: the template's layers are resolved against its depth"]
    row = await db.one(models.get(check_id(request.model_id, "m", "model_id")))
    if row is None:
        raise NotFound(f"No model {request.model_id!r}", details={"model_id": request.model_id})
    arch = architecture_of(row)
    if arch is None:
        return config, ["The model is not loaded yet: its layers are not known"]
    return fit_to(settings, arch)


QUICK_SCAN = {"depths": [0.0, 0.5, 1.0], "hook_types": ["residual"], "max_samples": 5000, "top_k_examples": 50}
FULL_ANALYSIS = {
    "all_layers": True,
    "hook_types": ["residual", "mlp", "attention"],
    "max_samples": None,
    "top_k_examples": 100,
}

EXTRACTION = Kind(
    "extraction",
    "et",
    ExtractionSettings,
    (
        ("Quick Scan", "The first, middle and last layers", True, QUICK_SCAN),
        ("Full Analysis", "Every layer: residual stream, MLP and attention outputs", False, FULL_ANALYSIS),
    ),
    _fit,
)

# The seeds as first made, with layers of a 12-layer model: a data dir seeded then gets today's seeds
# in their place, unless the user changed them.
_OLD_SEEDS = {
    "Quick Scan": ({"layers": [0, 6, 11], **{k: v for k, v in QUICK_SCAN.items() if k != "depths"}}, QUICK_SCAN),
    "Full Analysis": (
        {"layers": list(range(12)), **{k: v for k, v in FULL_ANALYSIS.items() if k != "all_layers"}},
        FULL_ANALYSIS,
    ),
}


async def upgrade_seeds(db: AsyncDatabase, now: float) -> str:
    """Rewrite the seeds made with absolute layers to today's (model-free) ones; their ids, comma-separated."""
    row = await db.one(app_state.get("seeded.extraction_templates"))
    upgraded = []
    for template_id in row["value"].split(",") if row and row["value"] else []:
        found = await db.one(sql.get(template_id, EXTRACTION.name))
        if found is None or found["name"] not in _OLD_SEEDS:
            continue
        old, new = _OLD_SEEDS[found["name"]]
        if msgspec.json.decode(found["config"]) != _stored(old):
            continue  # changed by the user: theirs to keep
        config = msgspec.json.encode(checked(EXTRACTION, new)).decode()
        await db.write(
            sql.update(template_id, found["name"], found["description"], bool(found["is_favorite"]), config, now)
        )
        upgraded.append(template_id)
    return ",".join(upgraded)


def _stored(config: dict[str, Any]) -> dict[str, Any]:
    """An old seed as it was stored: every field of its settings filled in."""
    return {"batch_size": 32, "context_length": 128, **config}
