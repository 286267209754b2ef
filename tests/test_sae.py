"""The SAE architectures: their fused forward/backward passes give the same losses and gradients as
the plain formulas under autograd, and each learns a synthetic sparse dictionary."""

from __future__ import annotations

import pytest
import torch

from appliance.pipeline.sae import SAEConfig, build
from appliance.pipeline.sae.step import train_step

torch.set_num_threads(1)
ARCHS = ("sparse", "topk", "jumprelu", "skip", "transcoder")
L1 = 0.3


def _sae(arch: str, d_in: int = 16, d_sae: int = 64, **kw):
    torch.manual_seed(0)
    sae = build(SAEConfig(arch, d_in, d_sae, **kw))
    with torch.no_grad():
        sae.b_dec.normal_(0, 0.1)
        sae.b_enc.normal_(0, 0.1)
    return sae


def _reference_loss(sae, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The textbook formulas, left entirely to autograd."""
    cfg = sae.cfg
    centred = x - sae.b_dec if cfg.apply_b_dec_to_input and cfg.architecture != "transcoder" else x
    pre = centred @ sae.W_enc + sae.b_enc
    if cfg.architecture == "topk":
        values, indices = torch.relu(pre).topk(cfg.k, dim=-1)
        z = torch.zeros_like(pre).scatter(1, indices, values)
        return ((z @ sae.W_dec + sae.b_dec - target) ** 2).sum(-1).mean()
    if cfg.architecture == "jumprelu":
        theta = sae.log_threshold.exp()
        bw = cfg.jumprelu_bandwidth
        mask = (pre > theta).float()
        near = ((pre - theta).abs() < bw / 2).float()
        # The straight-through estimators as value-free terms: (theta - theta.detach()) is 0 but
        # carries d/dtheta = 1, so these add exactly the paper's pseudo-derivatives.
        shift = theta - theta.detach()
        z = pre * mask - (theta.detach() / bw) * near * shift
        l0 = (mask - near * shift / bw).sum(-1).mean()
        return ((z @ sae.W_dec + sae.b_dec - target) ** 2).sum(-1).mean() + cfg.l0_coefficient * l0
    z = torch.relu(pre)
    x_hat = z @ sae.W_dec + sae.b_dec + (sae.alpha * x if cfg.architecture == "skip" else 0)
    l1 = (z * sae.W_dec.norm(dim=1)).sum(-1).mean()
    return ((x_hat - target) ** 2).sum(-1).mean() + cfg.l1_coefficient * l1


@pytest.mark.parametrize("arch", ARCHS)
def test_fused_passes_match_the_plain_formulas(arch: str) -> None:
    kw = {"k": 8, "aux_k_coefficient": 0.0, "jumprelu_init_threshold": 0.05, "jumprelu_bandwidth": 0.1}
    sae = _sae(arch, **kw)
    torch.manual_seed(1)
    x = torch.randn(32, 16)
    target = torch.randn(32, 16) if arch == "transcoder" else x
    if arch == "skip":
        with torch.no_grad():
            sae.alpha.fill_(0.3)
    out = sae.forward_train(x, target if arch == "transcoder" else None)
    out.loss.backward()
    fused = {n: p.grad.clone() for n, p in sae.named_parameters()}
    sae.zero_grad()
    reference = _reference_loss(sae, x, target)
    reference.backward()
    torch.testing.assert_close(out.loss, reference)
    for name, param in sae.named_parameters():
        torch.testing.assert_close(fused[name], param.grad, msg=f"{arch}: gradient of {name}")
    z = sae.encode(x)
    assert out.l0 is not None and abs(out.l0.item() - (z > 0).sum(-1).float().mean().item()) < 1e-5
    assert torch.equal(out.fired, (z > 0).any(0))
    torch.testing.assert_close(sae.reconstruct(x), out.x_hat)


@pytest.mark.parametrize("arch", ARCHS)
def test_each_architecture_learns_a_sparse_dictionary(arch: str) -> None:
    """Data made of 3-sparse combinations of 32 directions in 16 dims: every architecture must
    explain most of its variance."""
    torch.manual_seed(0)
    atoms = torch.nn.functional.normalize(torch.randn(32, 16), dim=1)

    def batch(n: int = 256) -> torch.Tensor:
        codes = torch.zeros(n, 32)
        idx = torch.rand(n, 32).topk(3, dim=1).indices
        codes.scatter_(1, idx, torch.rand(n, 3) * 2 + 0.5)
        return codes @ atoms

    sae = build(
        SAEConfig(
            arch,
            16,
            64,
            k=4,
            l1_coefficient=L1,
            l0_coefficient=0.1,
            jumprelu_init_threshold=0.05,
            jumprelu_bandwidth=0.05,
            dead_tokens=5000,
        )
    )
    mlp = torch.nn.Linear(16, 16) if arch == "transcoder" else None
    sae.init_b_dec(mlp(batch()).detach() if mlp else batch())
    optimizer = torch.optim.Adam(sae.parameters(), lr=3e-3)
    for _ in range(1500):
        x = batch()
        train_step(sae, optimizer, x, mlp(x).detach() if mlp else None, stats=False)
    x = batch(2048)
    target = mlp(x).detach() if mlp else x
    with torch.no_grad():
        out = sae.forward_train(x, target if mlp else None)
    explained = 1 - (out.x_hat - target).pow(2).sum() / (target - target.mean(0)).pow(2).sum()
    assert explained > 0.8, (arch, explained.item())
    # L0 counted here from the dense codes, not taken from the step's own statistic: exactly k for
    # TopK (every one of the 4 chosen is positive on this data), under a quarter of the latents for
    # the architectures that learn their sparsity (about half fire at initialisation).
    with torch.no_grad():
        counted = (sae.encode(x) > 0).sum(-1).float().mean().item()
    assert out.l0 is not None and out.l0.item() == pytest.approx(counted, abs=1e-5), (arch, out.l0, counted)
    assert (counted == 4) if arch == "topk" else (counted < 16), (arch, counted)


def _topk_with_dead_latents(aux_k_coefficient: float):
    """A TopK SAE whose first 16 latents are dead: counted dead, and with encoder columns 100x too
    small to ever reach the top k on their own (their pre-activations stay near 0)."""
    torch.manual_seed(0)
    sae = build(SAEConfig("topk", 16, 64, k=4, dead_tokens=10_000, aux_k_coefficient=aux_k_coefficient))
    dead = torch.zeros(64, dtype=torch.bool)
    dead[:16] = True
    with torch.no_grad():
        sae.W_enc[:, dead] *= 0.01
    sae.tokens_since_fired[dead] = 10_000
    return sae, dead


@pytest.mark.parametrize("auxk", [True, False])
def test_topk_auxk_alone_gives_dead_latents_a_gradient(auxk: bool) -> None:
    """The TopK selection never picks a dead latent, so only AuxK reaches its encoder and decoder;
    the AuxK term equals Gao et al.'s formula, and the live latents' encoder gradient is as without it."""
    sae, dead = _topk_with_dead_latents(1 / 32 if auxk else 0.0)
    torch.manual_seed(1)
    x = torch.randn(64, 16)
    out = sae.forward_train(x)
    assert not out.fired[dead].any()  # the top k never chose them
    out.loss.backward()
    moved = sae.W_enc.grad[:, dead].abs().sum(dim=0).gt(0) & sae.W_dec.grad[dead].abs().sum(dim=1).gt(0)
    assert int(moved.sum()) == (16 if auxk else 0), int(moved.sum())
    # The AuxK term from the plain formula: the top d_in/2 dead latents (ReLU'd) reconstruct the
    # error the live ones left, normalised by the error's variance.
    with torch.no_grad():
        pre = (x - sae.b_dec) @ sae.W_enc + sae.b_enc
        values, indices = pre.topk(4, dim=-1)
        z = torch.zeros_like(pre).scatter(1, indices, torch.relu(values))
        error = x - (z @ sae.W_dec + sae.b_dec)
        aux_values, aux_indices = pre.masked_fill(~dead, float("-inf")).topk(8, dim=-1)
        z_aux = torch.zeros_like(pre).scatter(1, aux_indices, torch.relu(aux_values))
        expected = (z_aux @ sae.W_dec - error).pow(2).sum(-1).mean() / (error - error.mean(0)).pow(2).sum(-1).mean()
    torch.testing.assert_close(out.sparsity, expected / 32 if auxk else torch.tensor(0.0))
    reference, _ = _topk_with_dead_latents(0.0)
    reference.forward_train(x).loss.backward()
    torch.testing.assert_close(sae.W_enc.grad[:, ~dead], reference.W_enc.grad[:, ~dead])


@pytest.mark.parametrize("auxk", [True, False])
def test_topk_revives_dead_latents_only_with_auxk(auxk: bool) -> None:
    """200 steps on a sparse dictionary: with AuxK every dead latent fires again; without it none
    ever does."""
    sae, dead = _topk_with_dead_latents(1 / 32 if auxk else 0.0)
    atoms = torch.nn.functional.normalize(torch.randn(32, 16), dim=1)
    optimizer = torch.optim.Adam(sae.parameters(), lr=1e-2)
    fired = torch.zeros(64, dtype=torch.bool)
    for _ in range(200):
        codes = torch.zeros(256, 32)
        codes.scatter_(1, torch.rand(256, 32).topk(3, dim=1).indices, torch.rand(256, 3) * 2 + 0.5)
        fired |= train_step(sae, optimizer, codes @ atoms, stats=False).fired
    assert int(fired[dead].sum()) == (16 if auxk else 0), int(fired[dead].sum())


@pytest.mark.parametrize("ghost", [False, True])
def test_ghost_grads_reach_only_dead_latents_when_on(ghost: bool) -> None:
    """Latents pushed below zero never fire, so ReLU gives their encoder no gradient; ghost grads
    give them one (towards the residual error) and leave the live latents' gradient as it was."""
    sae = _sae("sparse", dead_tokens=1, ghost_grads=ghost)
    dead = torch.zeros(sae.cfg.d_sae, dtype=torch.bool)
    dead[:8] = True
    with torch.no_grad():
        sae.b_enc[dead] = -100.0
    sae.tokens_since_fired[dead] = 10
    x = torch.randn(64, 16)
    out = sae.forward_train(x)
    out.loss.backward()
    dead_grad = sae.W_enc.grad[:, dead].abs().sum().item()
    assert (dead_grad > 0) == ghost, dead_grad
    if ghost:
        # The ghost term is scaled to the size of the reconstruction error.
        assert out.loss.item() == pytest.approx(out.mse.item() * 2 + out.sparsity.item(), rel=1e-3)
    reference = _sae("sparse", dead_tokens=1)
    reference.load_state_dict(sae.state_dict())
    reference.forward_train(x).loss.backward()
    live = ~dead
    reference_state = reference.tokens_since_fired
    assert reference_state[dead].ge(1).all()
    assert torch.allclose(reference.W_enc.grad[:, live], sae.W_enc.grad[:, live], atol=1e-5)


@pytest.mark.parametrize("arch", ["sparse", "topk", "jumprelu", "skip", "transcoder"])
def test_encode_subset_matches_the_full_encode(arch: str) -> None:
    """Steering reads a few latents per token; every architecture gives the dense encode's values."""
    torch.manual_seed(0)
    sae = build(SAEConfig(arch, 64, 256, k=8))
    with torch.no_grad():
        sae.b_enc.normal_()
        sae.b_dec.normal_()
    x = torch.randn(32, 64)
    active = sae.encode(x)[0].nonzero().flatten()[:3].tolist()
    idx = torch.tensor(sorted({3, 200, 255, *active}))
    full = sae.encode(x)[:, idx]
    assert (full > 0).any()
    assert torch.allclose(sae.subset_encoder(idx)(x), full, atol=1e-5)
