"""What the peer-library tests (test_peer_saelens, test_peer_sparsify) share: the demo model's
activations (stored by a real extraction, and freshly hooked with a plain forward hook), SAEs with
non-trivial weights, and imports driven through the real API and worker."""

from __future__ import annotations

import argparse
import csv
import difflib
import inspect
import io
import json
import re
import shutil
import textwrap
import zipfile
from pathlib import Path
from typing import Any

import torch

from tests.support import Appliance, demo_activations, demo_kit

LAYER = 2
POINTS = {"residual": "hook_resid_post", "mlp_in": "ln2.hook_normalized", "mlp": "hook_mlp_out"}
TOLERANCE = 1e-4  # latents and reconstructions, absolute and relative


def stored_activations(app: Appliance) -> dict[str, torch.Tensor]:
    """Layer LAYER's residual stream, MLP input and MLP output, as a real extraction stored them."""
    from safetensors.torch import load_file

    _, act = demo_activations(app, LAYER, hook_types=list(POINTS), batch_size=32, max_samples=32, context_length=64)
    folder = app.data_dir / "activations" / act["id"]
    return {
        kind: torch.cat(
            [
                load_file(str(folder / f"blocks.{LAYER}.{suffix}_{s['index']:04d}.safetensors"))["activations"].float()
                for s in act["manifest"]["shards"]
            ]
        )
        for kind, suffix in POINTS.items()
    }


def hooked_activations() -> dict[str, torch.Tensor]:
    """The same points of the demo model over a few held-out texts, read with plain forward hooks."""
    from tokenizers import Tokenizer
    from transformers import AutoModelForCausalLM

    from appliance.demo_kit import MODEL_DIR, TOKENIZER_FILE

    model = AutoModelForCausalLM.from_pretrained(str(MODEL_DIR), dtype=torch.float32).eval()
    tokenizer = Tokenizer.from_file(str(TOKENIZER_FILE))
    block = model.transformer.h[LAYER]
    seen: dict[str, list[torch.Tensor]] = {kind: [] for kind in POINTS}

    def block_output(_module: Any, _inputs: Any, out: Any) -> None:
        seen["residual"].append(out[0] if isinstance(out, tuple) else out)

    def mlp_out(_module: Any, _inputs: Any, out: Any) -> None:
        seen["mlp"].append(out)

    def normalised(module: Any, inputs: Any) -> None:
        # TransformerLens's ln2.hook_normalized: the layer norm's value before its weight and bias,
        # computed here from the norm's input, independently of the appliance's capture.
        x = inputs[0] - inputs[0].mean(dim=-1, keepdim=True)
        seen["mlp_in"].append(x / (x.pow(2).mean(dim=-1, keepdim=True) + module.eps).sqrt())

    hooks = [
        block.register_forward_hook(block_output),
        block.mlp.register_forward_hook(mlp_out),
        block.ln_2.register_forward_pre_hook(normalised),
    ]
    # Prose like the demo corpus's (standard-library docstrings), without reading the whole corpus.
    texts = [inspect.getdoc(m) or "" for m in (csv, json, re, shutil, textwrap, zipfile, argparse, difflib)]
    with torch.no_grad():
        for text in texts:
            ids = tokenizer.encode(text).ids[:128]
            model(torch.tensor([ids]))
    for hook in hooks:
        hook.remove()
    return {kind: torch.cat([t.reshape(-1, t.shape[-1]) for t in tensors]) for kind, tensors in seen.items()}


def randomise(params: dict[str, torch.nn.Parameter], x: torch.Tensor, centre: bool, seed: int = 0) -> None:
    """Non-trivial weights for an SAE with SAELens-named ``params`` (W_enc, b_enc or gated's b_gate,
    r_mag, b_mag, W_dec, b_dec and any of threshold, log_threshold, alpha, W_skip): decoder rows of
    uneven norms, non-zero biases, about a fifth of the latents firing on ``x`` and JumpReLU thresholds
    that half of those pass."""
    g = torch.Generator().manual_seed(seed)
    d_in, d_sae = params["W_enc"].shape
    d_out = params["W_dec"].shape[1]
    with torch.no_grad():
        norms = torch.rand(d_sae, 1, generator=g) * 1.5 + 0.3
        params["W_dec"].copy_(torch.randn(d_sae, d_out, generator=g) * norms / d_out**0.5)
        params["W_enc"].copy_(torch.randn(d_in, d_sae, generator=g) / d_in**0.5)
        params["b_dec"].copy_(torch.randn(d_out, generator=g) * 0.1)
        pre = ((x - params["b_dec"]) if centre else x) @ params["W_enc"]
        bias = -pre.quantile(0.8, dim=0) + 0.01 * torch.randn(d_sae, generator=g)
        if "b_gate" in params:  # gated: the gate bias decides what fires; magnitudes mostly positive there
            params["b_gate"].copy_(bias)
            params["r_mag"].copy_(0.3 * torch.randn(d_sae, generator=g))
            params["b_mag"].copy_(bias * params["r_mag"].exp() + 0.1 * torch.randn(d_sae, generator=g))
        else:
            params["b_enc"].copy_(bias)
        # Off the data's own values (a quantile can be one), where rounding would decide the gate.
        offset = 0.01 * torch.rand(d_sae, generator=g) + 1e-3
        threshold = (pre + bias).quantile(0.9, dim=0).clamp_min(0) + offset
        if "threshold" in params:
            params["threshold"].copy_(threshold)
        if "log_threshold" in params:
            params["log_threshold"].copy_(threshold.log())
        if "alpha" in params:
            params["alpha"].fill_(0.3)
        if "W_skip" in params:
            params["W_skip"].copy_(torch.randn(*params["W_skip"].shape, generator=g) * 0.05)


def zipped(folder: Path) -> bytes:
    """``folder`` as an upload: a zip holding it under its own name."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                archive.write(path, f"{folder.name}/{path.relative_to(folder)}")
    return buffer.getvalue()


def import_upload(app: Appliance, folder: Path, **fields: str) -> dict[str, Any]:
    """The import job (completed or failed) of ``folder`` uploaded as a zip for the demo model."""
    model, _ = demo_kit(app)
    response = app.post(
        "/api/training/import/upload",
        files={"file": ("sae.zip", zipped(folder))},
        data={"model_id": model["id"], **fields},
    )
    assert response.status_code == 202, response.text
    return app.wait_status(response.json()["data"]["job_id"], "completed", "failed", timeout=120)


def explained_variance(x_hat: torch.Tensor, y: torch.Tensor) -> float:
    return float(1 - (x_hat - y).pow(2).sum() / (y - y.mean(dim=0)).pow(2).sum())


def l0(z: torch.Tensor) -> float:
    """Active latents per token. Latents within rounding of zero are left out: SAELens centres the
    input before the matmul and we fold the centring into the bias, so a pre-activation of ~1e-7 can
    land on either side of zero (one such token moves a 1,000-token L0 by 1e-3)."""
    return float((z > 1e-5).sum(dim=-1).float().mean())


def assert_close(ours: torch.Tensor, theirs: torch.Tensor) -> None:
    torch.testing.assert_close(ours.float(), theirs.float(), rtol=TOLERANCE, atol=TOLERANCE)
