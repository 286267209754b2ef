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


# -- BatchTopK and Matryoshka BatchTopK -------------------------------------------------------------
BATCH_ARCHS = ("batchtopk", "matryoshka_batchtopk")


def _batch_reference(sae, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(dense codes, loss) from SAELens' formulas left to autograd: ReLU, the k x batch largest of the
    flattened batch, a dense decode; Matryoshka sums each prefix's MSE (its inner losses plus the
    whole's), every prefix decoding the latents the whole batch chose."""
    pre = (x - sae.b_dec) @ sae.W_enc + sae.b_enc
    acts = torch.relu(pre).flatten()
    values, indices = acts.topk(sae.cfg.k * x.shape[0])
    z = torch.zeros_like(acts).scatter(0, indices, values).view_as(pre)
    widths = sae.cfg.matryoshka_widths if sae.cfg.architecture == "matryoshka_batchtopk" else [sae.cfg.d_sae]
    loss = sum(((z[:, :w] @ sae.W_dec[:w] + sae.b_dec - x) ** 2).sum(-1).mean() for w in widths)
    return z, loss


@pytest.mark.parametrize("arch", BATCH_ARCHS)
def test_batch_topk_keeps_k_per_token_on_average_and_matches_the_plain_formulas(arch: str) -> None:
    """k x batch latents over the whole batch, so tokens get different numbers of them; the loss (for
    Matryoshka the sum of every prefix's reconstruction error, as a direct computation gives it) and
    every gradient equal the plain formulas'."""
    sae = _sae(arch, k=4, aux_k_coefficient=0.0, matryoshka_widths=[8, 24, 64] if arch != "batchtopk" else None)
    torch.manual_seed(1)
    x = torch.randn(32, 16) * torch.linspace(0.2, 3, 32).unsqueeze(1)  # tokens of uneven norms
    out = sae.forward_train(x)
    out.loss.backward()
    fused = {n: p.grad.clone() for n, p in sae.named_parameters()}
    sae.zero_grad()
    z, reference = _batch_reference(sae, x)
    reference.backward()
    torch.testing.assert_close(out.loss, reference)
    for name, param in sae.named_parameters():
        torch.testing.assert_close(fused[name], param.grad, msg=f"{arch}: gradient of {name}")
    per_token = (z > 0).sum(-1)
    assert out.l0 is not None and out.l0.item() == pytest.approx(4.0) == per_token.float().mean().item()
    assert per_token.min() < 4 < per_token.max(), per_token  # an average, not a per-token count
    assert torch.equal(out.fired, (z > 0).any(0))
    torch.testing.assert_close(out.x_hat, z.detach() @ sae.W_dec.detach() + sae.b_dec.detach())
    if arch == "matryoshka_batchtopk":
        torch.testing.assert_close(out.mse, ((out.x_hat - x) ** 2).sum(-1).mean())  # the whole's error


@pytest.mark.parametrize("arch", BATCH_ARCHS)
def test_batch_topk_threshold_is_a_moving_average_of_the_smallest_kept_activation(arch: str) -> None:
    """SAELens' rule, step by step: threshold <- (1 - lr) threshold + lr min(kept > 0); only training
    passes move it (a held-out pass under no_grad leaves it), and the state dict (checkpoints) holds it."""
    sae = _sae(arch, k=4, topk_threshold_lr=0.25)
    optimizer = torch.optim.Adam(sae.parameters(), lr=1e-3)
    expected = 0.0
    for step in range(3):
        torch.manual_seed(10 + step)
        x = torch.randn(32, 16)
        with torch.no_grad():
            z, _ = _batch_reference(sae, x)
            smallest = float(z[z > 0].min())
            sae.forward_train(torch.randn(32, 16))  # a held-out pass: no effect
        assert float(sae.topk_threshold) == pytest.approx(expected, rel=1e-6)
        train_step(sae, optimizer, x)
        expected = 0.75 * expected + 0.25 * smallest
        assert float(sae.topk_threshold) == pytest.approx(expected, rel=1e-6)
    assert sae.topk_threshold.dtype == torch.float64 and "topk_threshold" in sae.state_dict()
    again = build(sae.cfg)
    again.load_state_dict(sae.state_dict())
    assert float(again.topk_threshold) == float(sae.topk_threshold)


@pytest.mark.parametrize("arch", BATCH_ARCHS)
def test_batch_topk_inference_is_a_jumprelu_with_the_learned_threshold(arch: str) -> None:
    """Out of training the batch decides nothing: a latent is its pre-activation where that exceeds
    the one threshold, for the dense encode, the subset steering reads and the exported threshold."""
    sae = _sae(arch, k=4)
    sae.topk_threshold.fill_(0.3)
    torch.manual_seed(2)
    x = torch.randn(32, 16)
    with torch.no_grad():
        pre = (x - sae.b_dec) @ sae.W_enc + sae.b_enc
        expected = pre * (pre > 0.3)
        z = sae.encode(x)
        torch.testing.assert_close(z, expected)
        assert 0 < (z > 0).sum() < (pre > 0).sum()  # the threshold cuts latents a ReLU would keep
        torch.testing.assert_close(sae.encode(x[:1]), z[:1])  # a token's latents do not depend on the batch
        torch.testing.assert_close(sae.reconstruct(x), z @ sae.W_dec + sae.b_dec)
        idx = torch.tensor([0, 7, 33, 63])
        torch.testing.assert_close(sae.subset_encoder(idx)(x), z[:, idx])
    exported = sae.extra_state_tensors()["threshold"]
    assert exported.shape == (64,) and torch.equal(exported, torch.full((64,), 0.3))


def test_matryoshka_widths_default_and_groups() -> None:
    """The documented default (1/16, 1/8, 1/4, 1/2 of the dictionary, then all of it) and the group
    of a latent (the smallest prefix holding it), which the feature browser filters by."""
    from appliance.contracts.matryoshka import default_widths, group_bounds, prefix_group, widths_problem

    assert default_widths(4096) == [256, 512, 1024, 2048, 4096]
    assert build(SAEConfig("matryoshka_batchtopk", 16, 64)).widths == [4, 8, 16, 32, 64]
    widths = [4, 16, 64]
    assert [prefix_group(widths, i) for i in (0, 3, 4, 15, 16, 63)] == [0, 0, 1, 1, 2, 2]
    assert group_bounds(widths, 0) == (0, 4) and group_bounds(widths, 2) == (16, 64)
    assert widths_problem(widths, 64) is None
    assert widths_problem([4, 4, 64], 64) and widths_problem([4, 32], 64)
    with pytest.raises(ValueError):
        build(SAEConfig("matryoshka_batchtopk", 16, 64, matryoshka_widths=[8, 32]))


@pytest.mark.parametrize("arch", BATCH_ARCHS)
def test_batch_topk_learns_a_sparse_dictionary_and_keeps_its_l0_at_inference(arch: str) -> None:
    """The synthetic 3-sparse dictionary above: the training selection explains most of it, and so
    does the JumpReLU inference with the learned threshold, at an L0 near k."""
    torch.manual_seed(0)
    atoms = torch.nn.functional.normalize(torch.randn(32, 16), dim=1)

    def batch(n: int = 256) -> torch.Tensor:
        codes = torch.zeros(n, 32)
        codes.scatter_(1, torch.rand(n, 32).topk(3, dim=1).indices, torch.rand(n, 3) * 2 + 0.5)
        return codes @ atoms

    sae = build(SAEConfig(arch, 16, 64, k=4, dead_tokens=5000))
    sae.init_b_dec(batch())
    optimizer = torch.optim.Adam(sae.parameters(), lr=3e-3)
    for _ in range(1500):
        train_step(sae, optimizer, batch(), stats=False)
    x = batch(2048)
    with torch.no_grad():
        trained = sae.forward_train(x)
        x_hat = sae.reconstruct(x)
        counted = (sae.encode(x) > 0).sum(-1).float().mean().item()

    def explained(x_hat: torch.Tensor) -> float:
        return float(1 - (x_hat - x).pow(2).sum() / (x - x.mean(0)).pow(2).sum())

    assert explained(trained.x_hat) > 0.8 and explained(x_hat) > 0.8, (explained(trained.x_hat), explained(x_hat))
    assert 2 < counted < 8, counted


@pytest.mark.parametrize("candidates", [1.5, 0.5])
def test_batch_topk_selection_over_a_sampled_cut_is_the_full_batchs(
    candidates: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch large enough for the sampled cut (tokens of uneven norms, so the batch's choice is uneven
    too): the same latents and values as a top-k over every pre-activation, both when the cut keeps
    enough (1.5 x k x batch aimed for) and when it keeps too few (0.5 x: the full top-k runs instead)."""
    from appliance.pipeline.sae import batchtopk

    monkeypatch.setattr(batchtopk, "CANDIDATES", candidates)
    sae = build(SAEConfig("batchtopk", 16, 1024, k=8))
    torch.manual_seed(3)
    pre = torch.randn(1024, 1024) * torch.rand(1024, 1).pow(2) * 3
    cut = batchtopk._above_estimated_cut(pre.flatten(), 8 * 1024, 1024)
    assert (cut is not None) == (candidates > 1)
    if cut is not None:
        assert 8 * 1024 <= cut.numel() < 2 * 8 * 1024  # about 1.5 x the chosen pass the cut
    values, tokens, latents = sae.batch_select(pre)
    expected_values, flat = pre.flatten().topk(8 * 1024)
    flat, order = flat.sort()
    assert torch.equal(tokens * 1024 + latents, flat)
    assert torch.equal(values, torch.relu(expected_values[order]))
    counts = torch.bincount(tokens, minlength=1024)
    assert counts.max() > 4 * 8 and counts.min() == 0  # the batch gives some tokens far more than k
