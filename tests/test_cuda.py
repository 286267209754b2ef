"""The CUDA paths, where a GPU is present (CI has none: these skip there): SAE training steps under
bf16 autocast for every architecture, the memory metric, models in fp16/bf16 with hooks, and
steered generation on the GPU."""

from __future__ import annotations

import pytest
import torch

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")

ARCHITECTURES = ("sparse", "topk", "jumprelu", "skip", "transcoder")


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_bf16_autocast_training_learns(arch: str) -> None:
    from appliance.pipeline.sae import SAEConfig, build
    from appliance.pipeline.sae.step import train_step
    from appliance.pipeline.sae.training.loop import _memory_mb

    torch.manual_seed(0)
    device = torch.device("cuda")
    d_in, d_sae = 64, 512
    # Activations made of a few sparse directions: an SAE can reconstruct them well.
    dictionary = torch.randn(256, d_in, device=device)

    def batch() -> torch.Tensor:
        codes = torch.relu(torch.randn(1024, 256, device=device) - 2.0)
        return codes @ dictionary

    sae = build(SAEConfig(arch, d_in, d_sae, k=16, l1_coefficient=1.0), device=device)
    sae.init_b_dec(batch())
    optimizer = torch.optim.Adam(sae.parameters(), lr=1e-3)
    torch.cuda.reset_peak_memory_stats(device)
    first = last = None
    for step in range(200):
        x = batch()
        out = train_step(sae, optimizer, x, target=x if arch == "transcoder" else None, amp=torch.bfloat16)
        assert torch.isfinite(out.loss)
        if step == 0:
            first = float(out.mse.detach())
        last = float(out.mse.detach())
    assert all(p.dtype == torch.float32 for p in sae.parameters())  # master weights stay fp32
    assert last < 0.5 * first
    assert _memory_mb(device) > 0


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_steered_generation_on_the_gpu(precision: str) -> None:
    from tokenizers import Tokenizer

    from appliance.demo_kit import MODEL_DIR, TOKENIZER_FILE
    from appliance.pipeline.activations.extract import Capture
    from appliance.pipeline.models.architecture import hook_points
    from appliance.pipeline.models.loading import load
    from appliance.pipeline.sae import SAEConfig, build
    from appliance.pipeline.steering.generate import Intervention, SteeredFeature, generate, measure

    model = load(str(MODEL_DIR), precision)
    assert next(model.parameters()).device.type == "cuda"
    dtype = next(model.parameters()).dtype
    point = next(p for p in hook_points(model) if p["layer"] == 2 and p["type"] == "residual")
    tokenizer = Tokenizer.from_file(str(TOKENIZER_FILE))
    prompt = tokenizer.encode("Return the number of").ids
    capture = Capture(model, [point])
    try:
        captured, _, _ = capture([prompt])
    finally:
        capture.close()
    assert captured[point["name"]].shape[-1] == model.config.n_embd
    sae = build(SAEConfig("sparse", model.config.n_embd, 512), device="cuda")
    module = dict(model.named_modules())[point["module"]]
    for coefficient in (0.0, 6.0):
        intervention = Intervention(
            sae,
            [SteeredFeature(7, coefficient, "add", 5.0), SteeredFeature(9, 0.0, "ablate", 5.0)][
                : 1 if coefficient == 0 else 2
            ],
            False,
            False,
            "cuda",
            dtype,
        )
        handle = intervention.attach(module)
        try:
            out = generate(
                model,
                intervention,
                prompt,
                temperature=0.8,
                top_p=0.95,
                max_tokens=24,
                seed=3,
                tokenizer=tokenizer,
                eos=None,
            )
            sides = out["sides"]
            metrics, traces = measure(
                model, intervention, tokenizer, prompt, sides["unsteered"]["token_ids"], sides["steered"]["token_ids"]
            )
        finally:
            handle.remove()
        assert out["timing"]["device"] == "cuda"
        if coefficient == 0:
            assert sides["steered"]["token_ids"] == sides["unsteered"]["token_ids"]
            assert metrics["kl_divergence"] == 0.0
        else:
            assert metrics["kl_divergence"] > 0.01
            assert max(traces[1][1]) == 0.0  # the ablated latent reads 0 in the steered run
