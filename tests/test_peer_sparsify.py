"""Fidelity with EleutherAI sparsify (eai-sparsify, a dev dependency): coders built and saved with
sparsify's own SparseCoder, uploaded through the API, either import with sparsify's own latents and
reconstructions (a plain TopK coder) or are refused with a VALIDATION_ERROR naming the setting that
makes them something the appliance cannot compute (a skip connection, a transcoder, group-max
latents), never read as a plain TopK SAE."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from appliance.pipeline.sae.io.saelens import load_folder
from tests.peer_kit import LAYER, assert_close, import_upload, randomise, stored_activations
from tests.support import Appliance, started_demo

torch.set_num_threads(1)

D, D_SAE, K = 128, 512, 16


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Appliance]:
    yield from started_demo(tmp_path_factory, "peer_sparsify")


@pytest.fixture(scope="module")
def stored(app: Appliance) -> dict[str, torch.Tensor]:
    return stored_activations(app)


def _coder(x: torch.Tensor, **settings: Any) -> Any:
    """A sparsify SparseCoder with non-trivial weights (SAELens names mapped onto sparsify's)."""
    from sparsify import SparseCoder, SparseCoderConfig

    coder = SparseCoder(D, SparseCoderConfig(num_latents=D_SAE, k=K, **settings))
    params = {
        "W_enc": coder.encoder.weight.T,  # a view: filling it fills encoder.weight
        "b_enc": coder.encoder.bias,
        "W_dec": coder.W_dec,
        "b_dec": coder.b_dec,
        **({"W_skip": coder.W_skip} if coder.W_skip is not None else {}),
    }
    randomise(params, x, centre=not coder.cfg.transcode)
    return coder


# settings -> None (imports exactly) or the setting its refusal names
CASES: dict[str, tuple[dict[str, Any], str | None]] = {
    "topk": ({}, None),
    "multi-topk": ({"multi_topk": True, "normalize_decoder": False}, None),
    "skip-connection": ({"skip_connection": True}, "skip_connection"),
    "transcode": ({"transcode": True}, "transcode"),
    "groupmax": ({"activation": "groupmax"}, "activation"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_sparsify_coders_import_exactly_or_are_refused(
    case: str, app: Appliance, stored: dict[str, torch.Tensor], tmp_path: Path
) -> None:
    settings, refused = CASES[case]
    x = stored["residual"]
    coder = _coder(x, **settings)
    folder = tmp_path / case / f"layers.{LAYER}"  # sparsify names a hook's folder after its module
    coder.save_to_disk(folder)
    job = import_upload(app, folder)
    if refused is not None:
        assert job["status"] == "failed" and job["error"]["code"] == "VALIDATION_ERROR", job
        assert refused in job["error"]["message"], job["error"]["message"]
        return
    assert job["status"] == "completed", job["error"]
    training = app.get(f"/api/training/{job['target']['id']}").json()["data"]
    assert (training["encoder_type"], training["layer"], training["hook_type"]) == ("topk", LAYER, "residual")
    ours, metadata = load_folder(app.data_dir / "trainings" / training["id"] / "export")
    assert metadata["source_format"] == "sparsify" and metadata["skip_connection"] is False
    with torch.no_grad():
        top_acts, top_indices, _ = coder.encode(x)
        latents = torch.zeros(len(x), D_SAE).scatter_(1, top_indices, top_acts)
        assert_close(ours.encode(x), latents)
        assert_close(ours.reconstruct(x), coder.decode(top_acts, top_indices))
        if not coder.cfg.multi_topk:  # with it, forward returns the training loss's 4k-latent reconstruction
            assert_close(ours.reconstruct(x), coder(x).sae_out)
