"""Hook points are found from the module tree for every supported family (tiny random models), and
hooking each one yields the activations the name promises: [batch, seq, d_model]."""

from __future__ import annotations

import msgspec
import pytest
import torch
import transformers

from appliance.contracts.params.models import HookPoint
from appliance.pipeline.activations.extract import attach_capture
from appliance.pipeline.models.architecture import InputView, block_output, describe

torch.set_num_threads(1)
SMALL = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "vocab_size": 97,
    "max_position_embeddings": 64,
}
FAMILIES = {
    "gpt2": (transformers.GPT2Config, {"n_embd": 32, "n_layer": 3, "n_head": 4, "vocab_size": 97, "n_positions": 64}),
    "gpt_neox": (transformers.GPTNeoXConfig, SMALL),
    "llama": (transformers.LlamaConfig, {**SMALL, "num_key_value_heads": 2}),
    "qwen2": (transformers.Qwen2Config, {**SMALL, "num_key_value_heads": 2}),
    "mistral": (transformers.MistralConfig, {**SMALL, "num_key_value_heads": 2}),
    "gemma": (transformers.GemmaConfig, {**SMALL, "num_key_value_heads": 2, "head_dim": 8}),
    "phi": (transformers.PhiConfig, SMALL),
}


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_hook_points_of_each_family(family: str) -> None:
    config_class, kwargs = FAMILIES[family]
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(config_class(**kwargs)).eval()
    info = describe(model)
    layers = kwargs.get("num_hidden_layers", kwargs.get("n_layer"))
    d_model = kwargs.get("hidden_size", kwargs.get("n_embd"))
    assert info["family"] == family and info["layers"] == layers and info["d_model"] == d_model
    assert info["vocab_size"] == 97 and info["parameters"] == sum(p.numel() for p in model.parameters())
    points = info["hook_points"]
    assert {(p["layer"], p["type"]) for p in points} == {
        (i, t) for i in range(layers) for t in ("residual", "mlp_in", "mlp", "attention")
    }
    modules = dict(model.named_modules())
    seen: dict[str, torch.Tensor] = {}
    handles = [attach_capture(model, p, seen) for p in points]
    with torch.no_grad():
        out = model(torch.tensor([[1, 2, 3, 4, 5]]), output_hidden_states=True)
    for handle in handles:
        handle.remove()
    assert {p["name"] for p in points} == set(seen)
    for name, tensor in seen.items():
        assert tuple(tensor.shape) == (1, 5, d_model), name
    # mlp_in is what the MLP reads before the norm's affine: the MLP applied to it with the affine
    # put back gives mlp_out.
    for p in points:
        if p["type"] == "mlp_in":
            view = InputView(model, msgspec.convert(p, HookPoint))
            with torch.no_grad():
                again = modules[p["module"]](view.write(seen[p["name"]]))
            torch.testing.assert_close(block_output(again), seen[f"blocks.{p['layer']}.hook_mlp_out"])
    # The residual after block i is hidden_states[i + 1] (the last one has the final norm applied).
    for i in range(layers - 1):
        torch.testing.assert_close(seen[f"blocks.{i}.hook_resid_post"], out.hidden_states[i + 1])


# Which norm feeds each family's MLP, its TransformerLens name and its kind (how TransformerLens
# normalises); Gemma's norms scale by (1 + weight). OLMo 2's MLP reads the raw residual (its norms
# come after the sublayers): it has no mlp_in.
MLP_NORMS = {
    "gpt2": ("ln_2", "ln2", "layer", 0.0),
    "gpt_neox": ("post_attention_layernorm", "ln2", "layer", 0.0),
    "llama": ("post_attention_layernorm", "ln2", "rms", 0.0),
    "qwen2": ("post_attention_layernorm", "ln2", "rms", 0.0),
    "mistral": ("post_attention_layernorm", "ln2", "rms", 0.0),
    "gemma": ("post_attention_layernorm", "ln2", "rms", 1.0),
    "gemma2": ("pre_feedforward_layernorm", "ln2", "rms", 1.0),
    "phi": ("input_layernorm", "ln1", "layer", 0.0),  # parallel attention: one norm feeds both
    "gptj": ("ln_1", "ln1", "layer", 0.0),
    "olmo2": None,
}
MORE = {
    "gemma2": (transformers.Gemma2Config, {**SMALL, "num_key_value_heads": 2, "head_dim": 8}),
    "gptj": (transformers.GPTJConfig, {"n_embd": 32, "n_layer": 2, "n_head": 4, "vocab_size": 97, "rotary_dim": 4}),
    "olmo2": (transformers.Olmo2Config, {**SMALL, "num_key_value_heads": 2}),
}


@pytest.mark.parametrize("family", sorted(MLP_NORMS))
def test_mlp_in_is_the_norm_value_before_its_affine(family: str) -> None:
    config_class, kwargs = {**FAMILIES, **MORE}[family]
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(config_class(**kwargs)).eval()
    expected = MLP_NORMS[family]
    low = -0.5 if expected and expected[3] else 0.5  # scales of 0.5 to 1.5, whichever way they are stored
    with torch.no_grad():  # trained norms are not the identity: give each a weight and bias of its own
        for module in model.modules():
            if "norm" in type(module).__name__.lower():
                module.weight.uniform_(low, low + 1)
                if getattr(module, "bias", None) is not None:
                    module.bias.uniform_(-0.5, 0.5)
    points = [p for p in describe(model)["hook_points"] if p["type"] == "mlp_in"]
    if expected is None:
        assert points == []
        return
    norm_name, lens_name, kind, offset = expected
    path = describe(model)["layers_module"]
    assert [(p["name"], p["norm"], p.get("norm_offset", 0.0)) for p in points] == [
        (f"blocks.{i}.{lens_name}.hook_normalized", f"{path}.{i}.{norm_name}", offset) for i in range(len(points))
    ]
    seen: dict[str, torch.Tensor] = {}
    inputs: dict[str, torch.Tensor] = {}
    handles = [attach_capture(model, p, seen) for p in points]
    for p in points:
        norm = model.get_submodule(p["norm"])
        handles.append(norm.register_forward_pre_hook(lambda _m, args, key=p["name"]: inputs.setdefault(key, args[0])))
    with torch.no_grad():
        model(torch.tensor([[1, 2, 3, 4, 5, 6]]))
    for handle in handles:
        handle.remove()
    for p in points:
        x = inputs[p["name"]].float()
        eps = next(v for k in ("eps", "variance_epsilon") if (v := getattr(model.get_submodule(p["norm"]), k, None)))
        if kind == "layer":
            x = x - x.mean(-1, keepdim=True)
        truth = x / (x.pow(2).mean(-1, keepdim=True) + eps).sqrt()  # TransformerLens' hook_normalized
        assert float((seen[p["name"]] - truth).abs().max() / truth.abs().max()) <= 1e-4, p["name"]
