"""The gated SAE against SAELens' own (sae-lens, a dev dependency) on the same weights: its latents
equal GatedSAE.encode's, its loss terms GatedTrainingSAE's, and its gradients theirs except where it
follows the paper (the auxiliary reconstruction does not train the decoder); the few-latents encoder
of steering gives the dense encode's values."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from appliance.pipeline.sae import SAEConfig, build

torch.set_num_threads(1)
D_IN, D_SAE, L1 = 16, 64, 0.7


def _pair(centre: bool = True) -> tuple[Any, Any]:
    """(ours, SAELens' GatedTrainingSAE) holding the same non-trivial weights."""
    from sae_lens.saes.gated_sae import GatedTrainingSAE, GatedTrainingSAEConfig

    torch.manual_seed(0)
    ours = build(SAEConfig("gated", D_IN, D_SAE, l1_coefficient=L1, apply_b_dec_to_input=centre))
    with torch.no_grad():
        for name, param in ours.named_parameters():
            param.copy_(torch.randn_like(param) * (0.3 if name.startswith("W") else 0.2))
    theirs = GatedTrainingSAE(
        GatedTrainingSAEConfig(d_in=D_IN, d_sae=D_SAE, l1_coefficient=L1, apply_b_dec_to_input=centre)
    )
    state = {k: v.clone() for k, v in ours.state_dict().items() if k != "tokens_since_fired"}
    theirs.load_state_dict(state)  # strict: the same names and shapes, and no b_enc on either side
    return ours, theirs


@pytest.mark.parametrize("centre", [True, False])
def test_encode_equals_saelens(centre: bool) -> None:
    ours, theirs = _pair(centre)
    x = torch.randn(256, D_IN)
    with torch.no_grad():
        z = ours.encode(x)
        torch.testing.assert_close(z, theirs.encode(x), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(ours.reconstruct(x), theirs(x), rtol=1e-5, atol=1e-5)
    assert 0 < (z > 0).float().mean() < 1  # some latents fire, some are gated off


def test_loss_terms_and_encoder_gradients_equal_saelens() -> None:
    from sae_lens.saes.sae import TrainStepInput

    ours, theirs = _pair()
    x = torch.randn(128, D_IN)
    out = ours.forward_train(x)
    step = TrainStepInput(
        sae_in=x, coefficients={"l1": L1}, dead_neuron_mask=None, n_training_steps=0, is_logging_step=False
    )
    theirs_out = theirs.training_forward_pass(step)
    losses = theirs_out.losses
    torch.testing.assert_close(out.mse, losses["mse_loss"])
    torch.testing.assert_close(out.sparsity, losses["l1_loss"])
    torch.testing.assert_close(out.loss, theirs_out.loss)
    torch.testing.assert_close(out.loss - out.mse - out.sparsity, losses["auxiliary_reconstruction_loss"])
    z = ours.encode(x)
    assert out.l0 is not None and out.l0.item() == pytest.approx((z > 0).sum(-1).float().mean().item())
    assert torch.equal(out.fired, (z > 0).any(0))

    out.loss.backward()
    theirs_out.loss.backward()
    for name in ("W_enc", "b_gate", "r_mag", "b_mag"):
        torch.testing.assert_close(getattr(ours, name).grad, getattr(theirs, name).grad, msg=name)
    # The decoder learns from the reconstruction and the L1's norms only: SAELens' gradient less the
    # auxiliary term's decoder part, which the paper freezes.
    theirs.zero_grad()
    pi_gate = torch.relu((x - theirs.b_dec) @ theirs.W_enc + theirs.b_gate).detach()
    (pi_gate @ theirs.W_dec + theirs.b_dec - x).pow(2).sum(-1).mean().backward()
    aux_dec = {name: getattr(theirs, name).grad.clone() for name in ("W_dec", "b_dec")}
    theirs.zero_grad()
    theirs.training_forward_pass(step).loss.backward()
    for name, grad in aux_dec.items():
        torch.testing.assert_close(getattr(ours, name).grad, getattr(theirs, name).grad - grad, msg=name)


def test_subset_encoder_matches_the_full_encode() -> None:
    ours, _ = _pair()
    x = torch.randn(64, D_IN)
    with torch.no_grad():
        full = ours.encode(x)
        idx = torch.tensor(sorted({3, 40, 63, *full[0].nonzero().flatten()[:3].tolist()}))
        assert (full[:, idx] > 0).any()
        torch.testing.assert_close(ours.subset_encoder(idx)(x), full[:, idx])


def test_a_gated_sae_has_no_b_enc() -> None:
    """Code that reads ``b_enc`` must go through the class: a gated SAE fails loudly rather than
    offering a zero bias that its latents do not use."""
    ours, _ = _pair()
    assert not hasattr(ours, "b_enc")
    assert {"b_gate", "r_mag", "b_mag"} <= dict(ours.named_parameters()).keys()
