"""Hook points are found from the module tree for every supported family (tiny random models), and
hooking each one yields the activations the name promises: [batch, seq, d_model]."""

from __future__ import annotations

import pytest
import torch
import transformers

from appliance.pipeline.activations.extract import attach_capture
from appliance.pipeline.models.architecture import block_output, describe

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
    handles = [attach_capture(modules[p["module"]], p, seen) for p in points]
    with torch.no_grad():
        out = model(torch.tensor([[1, 2, 3, 4, 5]]), output_hidden_states=True)
    for handle in handles:
        handle.remove()
    assert {p["name"] for p in points} == set(seen)
    for name, tensor in seen.items():
        assert tuple(tensor.shape) == (1, 5, d_model), name
    # mlp_in is what the MLP reads: the MLP applied to it gives mlp_out.
    for p in points:
        if p["type"] == "mlp_in":
            with torch.no_grad():
                again = modules[p["module"]](seen[p["name"]])
            torch.testing.assert_close(block_output(again), seen[f"blocks.{p['layer']}.hook_mlp_out"])
    # The residual after block i is hidden_states[i + 1] (the last one has the final norm applied).
    for i in range(layers - 1):
        torch.testing.assert_close(seen[f"blocks.{i}.hook_resid_post"], out.hidden_states[i + 1])
