"""Which of a model's hook points a peer SAE reads, by the rule our exports follow: a SAELens hook name
means the tensor TransformerLens produces there once SAELens has loaded the model, which it does with
``HookedTransformer.from_pretrained_no_processing(model_name, **metadata.model_from_pretrained_kwargs)``
(sae_lens.load_model). Under those kwargs our points are TransformerLens' ``hook_resid_post``,
``hook_mlp_out``, ``hook_attn_out`` and ``ln2.hook_normalized`` (appliance.pipeline.models.lens);
``hook_resid_pre`` of block i > 0 is block i-1's ``hook_resid_post``. Anything else is refused with
the setting that stands in the way, never mapped to a point that holds another tensor.
"""

from __future__ import annotations

import re
from typing import Any

from appliance.contracts.params.training import HookPoint, HookType, ImportRun
from appliance.errors import ValidationError

_NAME = re.compile(r"blocks\.(\d+)\.(hook_resid_pre|hook_resid_post|hook_mlp_out|hook_attn_out|ln2\.hook_normalized)")
_TYPES: dict[str, HookType] = {
    "hook_resid_post": "residual",
    "hook_resid_pre": "residual",
    "hook_mlp_out": "mlp",
    "hook_attn_out": "attention",
    "ln2.hook_normalized": "mlp_in",
}
# Our points that TransformerLens' weight processing would change: it centres what writes to the
# residual stream (the layer norm's normalised input is unchanged: it centres anyway).
_CENTRED: tuple[HookType, ...] = ("residual", "mlp", "attention")


def peer_hook(params: ImportRun, metadata: dict[str, Any], transcoder: bool) -> HookPoint | None:
    """The point ``metadata.hook_name`` means (a transcoder's input: then ``hook_name_out`` must be
    the same layer's MLP output); None when the files name no hook. ValidationError when the name,
    under the SAE's model kwargs, is a tensor the appliance does not capture."""
    name = metadata.get("hook_name")
    if not name:
        return None
    model_class = metadata.get("model_class_name")
    if model_class not in (None, "HookedTransformer"):
        raise _refused(f"model_class_name={model_class!r}: its hook names are not TransformerLens'", "layer")
    kwargs = metadata.get("model_from_pretrained_kwargs") or {}
    layer, kind = _point(str(name), "hook_name")
    checked_processing(kwargs, kind)
    if transcoder:
        out = metadata.get("hook_name_out")
        if kind != "mlp_in" or not out or _point(str(out), "hook_name_out") != (layer, "mlp"):
            raise _refused(
                f"hook_name={name!r}, hook_name_out={out!r}: a transcoder must read blocks.{layer}.ln2.hook_normalized "
                f"(the MLP's input) and write blocks.{layer}.hook_mlp_out",
                "layer",
            )
        checked_processing(kwargs, "mlp")
    elif kind == "mlp_in":
        raise _refused(f"hook_name={name!r}: the MLP's input is read only as a transcoder's input", "layer")
    return point(params, layer, kind)


def checked_processing(kwargs: dict[str, Any], kind: HookType) -> None:
    """ValidationError when TransformerLens, loaded with ``kwargs``, holds another tensor at a ``kind``
    point than the model does (from_pretrained_no_processing leaves the weights alone unless told)."""
    if kind in _CENTRED and kwargs.get("center_writing_weights"):
        raise _refused(
            "model_from_pretrained_kwargs.center_writing_weights=True: the SAE read a centred residual stream, "
            "which the appliance does not capture",
            "file",
        )


def point(params: ImportRun, layer: int, kind: HookType) -> HookPoint:
    found = [p for p in params.hook_points if p.layer == layer and p.type == kind]
    if not found:
        raise _refused(f"{params.model_name} has no {kind} hook point at layer {layer}", "layer")
    return found[0]


def _point(name: str, key: str) -> tuple[int, HookType]:
    match = _NAME.fullmatch(name)
    if match is None:
        raise _refused(
            f"{key}={name!r}: the appliance captures blocks.<i>.hook_resid_post (or hook_resid_pre, i > 0), "
            "hook_mlp_out, hook_attn_out and ln2.hook_normalized",
            "layer",
        )
    layer, suffix = int(match.group(1)), match.group(2)
    if suffix == "hook_resid_pre":
        if layer == 0:
            raise _refused(f"{key}={name!r}: the embeddings, which the appliance does not capture", "layer")
        layer -= 1  # the same tensor as the previous block's output
    return layer, _TYPES[suffix]


def _refused(message: str, field: str) -> ValidationError:
    return ValidationError(f"Cannot read this SAE as its authors meant: {message}", details={"field": field})
