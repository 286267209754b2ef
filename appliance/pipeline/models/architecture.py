"""What a causal LM is made of, read from its module tree: family, sizes, and the hook points per layer.

Hook points carry SAELens / TransformerLens names (``blocks.{i}.hook_resid_post``, ``hook_mlp_out``,
``hook_attn_out``, ``ln2.hook_normalized``) so exported SAEs name their hook the way those tools do,
and the module path the worker attaches a hook to. Each name means the tensor TransformerLens holds
under it when it loads the model with ``lens.TRANSFORMER_LENS_KWARGS`` (no weight processing): the
output of a decoder block is the residual stream after that layer; the MLP and attention submodules'
outputs are what those sublayers add to it. ``mlp_in`` is the transcoder's source (``mlp`` its
target): the normalised value of the layer norm that feeds the MLP, before that norm's affine, as
TransformerLens' ``hook_normalized`` is. It is read from the MLP module's input (``"input": true``)
with the affine undone in fp32 (``InputView``), so every stage still hooks a single module. Which norm
feeds the MLP is found by running the model once (names mislead: Gemma 2's
``post_attention_layernorm`` normalises the attention's output, and parallel-attention families such
as GPT-J and Phi share ``ln_1``, TransformerLens' ``ln1``); a model where none does, or whose norm is
not a plain LayerNorm or RMSNorm, has no ``mlp_in`` point.
"""

from __future__ import annotations

from typing import Any

from appliance.contracts.params.models import HookPoint

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


def _eps(module: Any, config: Any) -> float | None:
    for name in ("eps", "variance_epsilon", "epsilon"):
        value = getattr(module, name, None)
        if isinstance(value, float):
            return value
    return _config(config, "layer_norm_epsilon", "layer_norm_eps", "rms_norm_eps", "norm_eps")


def _normalised(x: Any, eps: float) -> dict[str, Any]:
    """x normalised as TransformerLens' LayerNorm and RMSNorm do (fp32, before their affine)."""
    x = x.float()
    centred = x - x.mean(-1, keepdim=True)
    return {
        "layer": centred / (centred.pow(2).mean(-1, keepdim=True) + eps).sqrt(),
        "rms": x / (x.pow(2).mean(-1, keepdim=True) + eps).sqrt(),
    }


def _norms(block: Any) -> list[tuple[str, Any]]:
    return [(name, m) for name, m in block.named_children() if "norm" in type(m).__name__.lower()]


def _undone(norm: Any, y: Any, offset: float) -> Any:
    """n from a norm's output y = n * (weight + offset) + bias, in fp32."""
    weight, bias = getattr(norm, "weight", None), getattr(norm, "bias", None)
    n = y.float()
    if bias is not None:
        n = n - bias.detach().float()
    if weight is not None:
        n = n / (weight.detach().float() + offset)
    return n


def _record(model: Any, layers: Any) -> dict[tuple[int, str], Any]:
    """One forward pass on a few tokens: per block, what its MLP read (``(i, "")``) and each child
    norm's (input, output)."""
    import torch

    seen: dict[tuple[int, str], Any] = {}

    def keep(key: tuple[int, str], value: Any) -> None:  # a hook that returns a value would replace the tensor
        seen.setdefault(key, value)

    handles = []
    for index, block in enumerate(layers):
        if (mlp := _child(block, MLP_NAMES)) is None:
            continue
        handles.append(
            getattr(block, mlp).register_forward_pre_hook(
                lambda _m, args, kwargs, key=(index, ""): keep(key, first_input(args, kwargs)), with_kwargs=True
            )
        )
        for name, norm in _norms(block):
            handles.append(
                norm.register_forward_hook(
                    lambda _m, args, out, key=(index, name): keep(key, (args[0] if args else None, out))
                )
            )
    first = next(model.parameters())
    ids = (torch.arange(1, 9) % (_config(model.config, "vocab_size") or 2)).unsqueeze(0).to(first.device)
    try:
        with torch.inference_mode():
            model(input_ids=ids, use_cache=False)
    finally:
        for handle in handles:
            handle.remove()
    return seen


def _mlp_norm(model: Any, block: Any, index: int, seen: dict[tuple[int, str], Any]) -> tuple[str, float] | None:
    """The block's child norm whose output is exactly what its MLP read, and its weight offset: the
    one (0: weight, 1: 1 + weight) with which a LayerNorm or RMSNorm of the norm's input reproduces
    its output. None when no norm does (the MLP reads something else)."""
    import torch

    mlp_input = seen.get((index, ""))
    if not isinstance(mlp_input, torch.Tensor):
        return None
    tolerance = 1e-3 if mlp_input.dtype == torch.float32 else 3e-2
    for name, norm in _norms(block):
        x, y = seen.get((index, name), (None, None))
        eps = _eps(norm, model.config)
        if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor) or eps is None:
            continue
        if y.shape != mlp_input.shape or not torch.equal(y, mlp_input):
            continue
        for offset in (0.0, 1.0):
            n = _undone(norm, y, offset)
            for truth in _normalised(x, eps).values():
                if float((n - truth).abs().max()) <= tolerance * float(truth.abs().max()):
                    return name, offset
    return None


def hook_points(model: Any) -> list[dict[str, Any]]:
    path, layers = find_layers(model)
    seen = _record(model, layers)
    points = []
    for index, block in enumerate(layers):
        modules = {"residual": f"{path}.{index}"}
        norm = None
        if (mlp := _child(block, MLP_NAMES)) is not None:
            modules["mlp"] = f"{path}.{index}.{mlp}"
            if (norm := _mlp_norm(model, block, index, seen)) is not None:
                modules["mlp_in"] = modules["mlp"]
        if (attention := _child(block, ATTENTION_NAMES)) is not None:
            modules["attention"] = f"{path}.{index}.{attention}"
        for kind in HOOK_TYPES:
            if kind in modules:
                point: dict[str, Any] = {
                    "layer": index,
                    "type": kind,
                    "name": f"blocks.{index}.{HOOK_NAMES[kind]}",
                    "module": modules[kind],
                }
                if kind == "mlp_in" and norm is not None:
                    # The block's first norm is its input norm (TransformerLens' ln1): the MLP reads
                    # it only in parallel-attention blocks (GPT-J, Phi).
                    if norm[0] == _norms(block)[0][0]:
                        point["name"] = f"blocks.{index}.ln1.hook_normalized"
                    point.update(input=True, norm=f"{path}.{index}.{norm[0]}")
                    if norm[1]:
                        point["norm_offset"] = norm[1]
                points.append(point)
    return points


class InputView:
    """An input point's value, read from its module's call arguments, and a value in that space
    written back as the module's input. Plain input points are the module's input itself; a point
    behind a layer norm (``HookPoint.norm``) is that norm's normalised value before its affine, n =
    (y - bias) / (weight + offset), computed in fp32 from the MLP's input y and cast back to y's dtype."""

    def __init__(self, model: Any, point: HookPoint):
        self.scale = self.shift = None
        if point.norm:
            norm = model.get_submodule(point.norm)
            weight, bias = getattr(norm, "weight", None), getattr(norm, "bias", None)
            if weight is not None:
                self.scale = weight.detach().float() + point.norm_offset
            if bias is not None:
                self.shift = bias.detach().float()

    def read(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        y = first_input(args, kwargs)
        if self.scale is None and self.shift is None:
            return y
        n = y.float()
        if self.shift is not None:
            n = n - self.shift
        if self.scale is not None:
            n = n / self.scale
        return n.to(y.dtype)

    def write(self, n: Any) -> Any:
        """The module input whose ``read`` is ``n``."""
        if self.scale is None and self.shift is None:
            return n
        y = n.float()
        if self.scale is not None:
            y = y * self.scale
        if self.shift is not None:
            y = y + self.shift
        return y.to(n.dtype)


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
