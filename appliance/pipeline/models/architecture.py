"""What a causal LM is made of, read from its module tree: family, sizes, and the hook points per layer.

Hook points carry SAELens / TransformerLens names (``blocks.{i}.hook_resid_post``, ``hook_mlp_out``,
``hook_attn_out``, ``ln2.hook_normalized``) so exported SAEs name their hook the way those tools do,
and the module path the worker attaches a hook to. The output of a decoder block is the residual
stream after that layer; the MLP and attention submodules' outputs are what those sublayers add to
it. ``mlp_in`` is what enters the MLP (after its layer norm): read from the MLP module's input
(``"input": true``), it is the transcoder's source, with ``mlp`` its target.
"""

from __future__ import annotations

from typing import Any

HOOK_TYPES = ("residual", "mlp_in", "mlp", "attention")
HOOK_NAMES = {
    "residual": "hook_resid_post",
    "mlp_in": "ln2.hook_normalized",
    "mlp": "hook_mlp_out",
    "attention": "hook_attn_out",
}
# Where each family keeps its decoder blocks, and what the sublayers are called.
LAYER_PATHS = ("transformer.h", "gpt_neox.layers", "model.layers", "model.decoder.layers", "transformer.layers")
MLP_NAMES = ("mlp", "feed_forward", "ffn")
ATTENTION_NAMES = ("attn", "self_attn", "attention", "self_attention")


class UnsupportedArchitecture(ValueError):
    pass


def _get(root: Any, path: str) -> Any:
    node = root
    for part in path.split("."):
        node = getattr(node, part, None)
        if node is None:
            return None
    return node


def _config(config: Any, *names: str, default: Any = None) -> Any:
    for name in names:
        value = getattr(config, name, None)
        if value is not None:
            return value
    text = getattr(config, "text_config", None)  # multimodal wrappers keep the LM's sizes here
    return _config(text, *names, default=default) if text is not None else default


def find_layers(model: Any) -> tuple[str, Any]:
    """The decoder blocks (an nn.ModuleList) and their path."""
    import torch

    count = _config(model.config, "num_hidden_layers", "n_layer", "num_layers")
    for path in LAYER_PATHS:
        layers = _get(model, path)
        if isinstance(layers, torch.nn.ModuleList) and (count is None or len(layers) == count):
            return path, layers
    for name, module in model.named_modules():  # any other family: the ModuleList of the right length
        if isinstance(module, torch.nn.ModuleList) and count and len(module) == count:
            return name, module
    raise UnsupportedArchitecture(f"Cannot find the decoder layers of {type(model).__name__}")


def _child(block: Any, names: tuple[str, ...]) -> str | None:
    for name in names:
        if getattr(block, name, None) is not None:
            return name
    return None


def hook_points(model: Any) -> list[dict[str, Any]]:
    path, layers = find_layers(model)
    points = []
    for index, block in enumerate(layers):
        modules = {"residual": f"{path}.{index}"}
        if (mlp := _child(block, MLP_NAMES)) is not None:
            modules["mlp"] = modules["mlp_in"] = f"{path}.{index}.{mlp}"
        if (attention := _child(block, ATTENTION_NAMES)) is not None:
            modules["attention"] = f"{path}.{index}.{attention}"
        for kind in HOOK_TYPES:
            if kind in modules:
                point = {
                    "layer": index,
                    "type": kind,
                    "name": f"blocks.{index}.{HOOK_NAMES[kind]}",
                    "module": modules[kind],
                }
                if kind == "mlp_in":
                    point["input"] = True
                points.append(point)
    return points


def describe(model: Any) -> dict[str, Any]:
    """Family, sizes and hook points; JSON-able, stored with the model so the API needs no torch (it
    reads them back as appliance.contracts.params.models.ModelArchitecture)."""
    config = model.config
    path, layers = find_layers(model)
    return {
        "family": config.model_type,
        "class": type(model).__name__,
        "layers": len(layers),
        "d_model": _config(config, "hidden_size", "n_embd", "d_model"),
        "heads": _config(config, "num_attention_heads", "n_head"),
        "kv_heads": _config(config, "num_key_value_heads"),
        "d_mlp": _config(config, "intermediate_size", "n_inner") or 4 * (_config(config, "hidden_size", "n_embd") or 0),
        "vocab_size": _config(config, "vocab_size"),
        "context_length": _config(config, "max_position_embeddings", "n_positions", "n_ctx"),
        "parameters": sum(p.numel() for p in model.parameters()),
        "layers_module": path,
        "hook_points": hook_points(model),
    }


def first_input(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """The hidden states a module was called with (positionally, or as its first keyword)."""
    return args[0] if args else next(iter(kwargs.values()))


def block_output(output: Any) -> Any:
    """A module's output as a tensor: blocks return a tensor (transformers 5 GPT-2) or a tuple."""
    return output[0] if isinstance(output, (tuple, list)) else output
