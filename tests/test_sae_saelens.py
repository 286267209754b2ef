"""SAELens-layout export and import: an exported SAE, read with safetensors + cfg.json alone and the
SAELens formulas, reproduces the appliance's encode/decode; imported SAELens and sparsify SAEs give
the feature activations of a direct matmul."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from appliance.pipeline.sae import SAEConfig, build
from appliance.pipeline.sae.io.saelens import export, load_folder

torch.set_num_threads(1)


def saelens_encode(cfg: dict, w: dict, x: torch.Tensor) -> torch.Tensor:
    """SAELens' encode for each architecture, from the files alone."""
    centred = x - w["b_dec"] if cfg["apply_b_dec_to_input"] else x
    pre = centred @ w["W_enc"] + w["b_enc"]
    if cfg["architecture"] == "topk":
        values, indices = torch.relu(pre).topk(cfg["k"], dim=-1)
        return torch.zeros_like(pre).scatter(1, indices, values)
    if cfg["architecture"] == "jumprelu":
        return pre * (pre > w["threshold"])
    return torch.relu(pre)


def saelens_decode(w: dict, z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    out = z @ w["W_dec"] + w["b_dec"]
    return out + x @ w["W_skip"] if "W_skip" in w else out


@pytest.mark.parametrize("arch", ["sparse", "topk", "jumprelu", "skip", "transcoder"])
def test_export_reproduces_encode_and_decode(arch: str, tmp_path) -> None:
    torch.manual_seed(0)
    sae = build(SAEConfig(arch, 16, 48, d_out=24 if arch == "transcoder" else None, k=5, jumprelu_init_threshold=0.1))
    with torch.no_grad():
        sae.b_enc.normal_(0, 0.2)
        sae.b_dec.normal_(0, 0.2)
        if arch == "skip":
            sae.alpha.fill_(0.25)
    folder = export(
        sae,
        tmp_path / arch,
        {"model_name": "demo", "hook_name": "blocks.1.hook_resid_post", "context_size": 128, "dataset_path": "ds_x"},
        log_sparsity=torch.full((48,), -2.0),
    )
    cfg = json.loads((folder / "cfg.json").read_text())
    weights = load_file(str(folder / "sae_weights.safetensors"))
    assert weights["W_enc"].shape == (16, 48) and weights["W_dec"].shape == (48, cfg.get("d_out", 16))
    assert cfg["d_in"] == 16 and cfg["d_sae"] == 48 and cfg["metadata"]["hook_name"] == "blocks.1.hook_resid_post"
    assert load_file(str(folder / "sparsity.safetensors"))["sparsity"].shape == (48,)
    x = torch.randn(20, 16)
    with torch.no_grad():
        z = sae.encode(x)
        torch.testing.assert_close(saelens_encode(cfg, weights, x), z)
        torch.testing.assert_close(saelens_decode(weights, z, x), sae.reconstruct(x), rtol=1e-5, atol=1e-5)
    again, metadata = load_folder(folder)  # and it comes back as the same SAE
    assert again.cfg.architecture == arch and metadata["context_size"] == 128
    with torch.no_grad():
        torch.testing.assert_close(again.reconstruct(x), sae.reconstruct(x))


def test_import_saelens_and_sparsify_layouts(tmp_path) -> None:
    torch.manual_seed(1)
    d_in, d_sae = 12, 40
    W_enc, b_enc = torch.randn(d_in, d_sae), torch.randn(d_sae) * 0.1
    W_dec, b_dec = torch.randn(d_sae, d_in), torch.randn(d_in) * 0.1
    x = torch.randn(9, d_in)
    # A SAELens "standard" SAE written by someone else (no mistudio metadata, old top-level fields).
    folder = tmp_path / "saelens"
    folder.mkdir()
    save_file({"W_enc": W_enc, "b_enc": b_enc, "W_dec": W_dec, "b_dec": b_dec}, str(folder / "sae_weights.safetensors"))
    (folder / "cfg.json").write_text(
        json.dumps(
            {
                "architecture": "standard",
                "d_in": d_in,
                "d_sae": d_sae,
                "apply_b_dec_to_input": True,
                "hook_name": "blocks.3.hook_resid_pre",
                "model_name": "gpt2",
                "normalize_activations": "none",
            }
        )
    )
    sae, metadata = load_folder(folder)
    with torch.no_grad():
        torch.testing.assert_close(sae.encode(x), torch.relu((x - b_dec) @ W_enc + b_enc))
    assert metadata["hook_name"] == "blocks.3.hook_resid_pre"
    # A sparsify TopK SAE.
    folder = tmp_path / "sparsify"
    folder.mkdir()
    save_file(
        {"encoder.weight": W_enc.T.contiguous(), "encoder.bias": b_enc, "W_dec": W_dec, "b_dec": b_dec},
        str(folder / "sae.safetensors"),
    )
    (folder / "cfg.json").write_text(json.dumps({"expansion_factor": 4, "normalize_decoder": True, "k": 6}))
    sae, metadata = load_folder(folder)
    pre = (x - b_dec) @ W_enc + b_enc
    values, indices = torch.relu(pre).topk(6, dim=-1)
    with torch.no_grad():
        torch.testing.assert_close(sae.encode(x), torch.zeros_like(pre).scatter(1, indices, values))
    assert metadata["source_format"] == "sparsify"


def test_skip_exports_written_before_skip_transcoders_still_load(tmp_path) -> None:
    """Exports of skip SAEs from before they became SAELens skip transcoders ("standard" plus
    W_skip = alpha * I, the encoder centred on b_dec) load as the same skip SAE."""
    torch.manual_seed(2)
    sae = build(SAEConfig("skip", 16, 48))
    with torch.no_grad():
        sae.b_enc.normal_(0, 0.2)
        sae.b_dec.normal_(0, 0.2)
        sae.alpha.fill_(0.25)
    folder = tmp_path / "legacy"
    folder.mkdir()
    tensors = {name: getattr(sae, name).detach() for name in ("W_enc", "b_enc", "W_dec", "b_dec")}
    save_file({**tensors, "W_skip": 0.25 * torch.eye(16)}, str(folder / "sae_weights.safetensors"))
    config = {"architecture": "standard", "d_in": 16, "d_sae": 48, "apply_b_dec_to_input": True}
    (folder / "cfg.json").write_text(json.dumps({**config, "metadata": {"mistudio_architecture": "skip"}}))
    again, _ = load_folder(folder)
    x = torch.randn(20, 16)
    assert again.cfg.architecture == "skip"
    with torch.no_grad():
        torch.testing.assert_close(again.reconstruct(x), sae.reconstruct(x))
