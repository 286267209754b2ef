"""How the appliance's hook points line up with TransformerLens, the library SAELens loads models with.

A hook name in an exported SAE is only meaningful together with how TransformerLens loads the model:
its default weight processing (``center_writing_weights`` above all) changes what ``hook_resid_post``,
``hook_mlp_out`` and ``hook_attn_out`` hold. The appliance reads the model as its authors wrote it,
so its exports ask TransformerLens to do the same (SAELens passes these to
``HookedTransformer.from_pretrained_no_processing``; ``HookedTransformer.from_pretrained`` takes them
too), and TransformerLens then produces exactly the tensors the SAE was trained on.
"""

from __future__ import annotations

from typing import Any

# ``metadata.model_from_pretrained_kwargs`` of every export: no processing of the weights.
TRANSFORMER_LENS_KWARGS: dict[str, bool] = {
    "fold_ln": False,
    "center_writing_weights": False,
    "center_unembed": False,
    "fold_value_biases": False,
    "refactor_factored_attn_matrices": False,
}
# SAELens' ``metadata.model_class_name``: the TransformerLens class those kwargs are for.
MODEL_CLASS_NAME = "HookedTransformer"


def loading_metadata() -> dict[str, Any]:
    """The export metadata that tells SAELens how to load the model so its hooks hold our tensors."""
    return {"model_class_name": MODEL_CLASS_NAME, "model_from_pretrained_kwargs": dict(TRANSFORMER_LENS_KWARGS)}
