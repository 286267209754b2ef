"""The peer libraries' training steps that ``mistudio bench training`` times next to the appliance's: SAELens'
TrainingSAE and sparsify's TopK SparseCoder, each doing what its own trainer does per step.

Each peer starts from the appliance SAE's weights (same names in SAELens; transposed encoder in sparsify), so
both sides see the same pre-activations and the same sparsity pattern: only the implementations differ.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from appliance.pipeline.sae import SAE

# The appliance's architecture -> SAELens' name for the same one (skip and transcoder have no SAELens
# training class with the same loss).
SAELENS_NAMES = {
    "sparse": "standard",
    "topk": "topk",
    "jumprelu": "jumprelu",
    "gated": "gated",
    "batchtopk": "batchtopk",
    "matryoshka_batchtopk": "matryoshka_batchtopk",
}


def saelens_version() -> str | None:
    """SAELens' version, or None when it is not installed (it is a dev dependency)."""
    try:
        from importlib.metadata import version

        import sae_lens  # noqa: F401 - the import is the check
    except ImportError:
        return None
    return version("sae_lens")


def sparsify_version() -> str | None:
    import contextlib
    import sys

    try:
        from importlib.metadata import version

        with contextlib.redirect_stdout(sys.stderr):  # it prints which decoder it uses: stdout is the report's
            import sparsify  # noqa: F401 - the import is the check
    except ImportError:
        return None
    return version("eai_sparsify")


def _saelens_config(ours: SAE) -> dict[str, Any]:
    """SAELens' config fields for the same SAE and the same loss coefficients as ``ours``."""
    cfg = ours.cfg
    common: dict[str, Any] = {"d_in": cfg.d_in, "d_sae": cfg.d_sae, "dtype": "float32", "device": "cpu"}
    name = cfg.architecture
    if name in ("sparse", "gated"):
        return common | {"l1_coefficient": cfg.l1_coefficient}
    if name == "jumprelu":
        return common | {
            "l0_coefficient": cfg.l0_coefficient,
            "jumprelu_init_threshold": cfg.jumprelu_init_threshold,
            "jumprelu_bandwidth": cfg.jumprelu_bandwidth,
        }
    k = common | {"k": cfg.k, "aux_loss_coefficient": cfg.aux_k_coefficient}
    if name == "topk":
        return k
    k["topk_threshold_lr"] = cfg.topk_threshold_lr
    if name == "batchtopk":
        return k
    return k | {"matryoshka_widths": list(getattr(ours, "widths", None) or cfg.matryoshka_widths or [cfg.d_sae])}


def saelens_step(ours: SAE, x: torch.Tensor) -> Callable[[], object]:
    """One SAELens training step on ``x``, as its SAETrainer._train_step runs it: training_forward_pass with
    the coefficients after warm-up and a dead-latent mask (none dead), the dead-latent counter, backward,
    Adam. Left out, so the comparison favours SAELens: its gradient-norm clipping, LR scheduler and
    activation-frequency logging."""
    import torch
    from sae_lens.registry import get_sae_training_class
    from sae_lens.saes.sae import TrainCoefficientConfig, TrainStepInput

    cls, config_cls = get_sae_training_class(SAELENS_NAMES[ours.cfg.architecture])
    sae = cls(config_cls(**_saelens_config(ours)))
    mine = ours.state_dict()
    with torch.no_grad():
        for name, tensor in sae.state_dict().items():
            if name in mine and mine[name].shape == tensor.shape:
                tensor.copy_(mine[name])
    sae.train()
    optimizer = torch.optim.Adam(sae.parameters(), lr=1e-4)
    coefficients = {
        name: c.value if isinstance(c, TrainCoefficientConfig) else c for name, c in sae.get_coefficients().items()
    }
    dead = torch.zeros(ours.cfg.d_sae, dtype=torch.bool)
    since_fired = torch.zeros(ours.cfg.d_sae)
    steps = [0]

    def step() -> object:
        out = sae.training_forward_pass(
            TrainStepInput(
                sae_in=x,
                coefficients=coefficients,
                dead_neuron_mask=dead,
                n_training_steps=steps[0],
                is_logging_step=False,
            )
        )
        with torch.no_grad():
            did_fire = out.feature_acts.bool().float().sum(-2).bool()
            since_fired.add_(1)
            since_fired[did_fire] = 0
        out.loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        steps[0] += 1
        return out.loss

    return step


def sparsify_step(ours: SAE, x: torch.Tensor) -> Callable[[], object]:
    """One step of sparsify's TopK SparseCoder on ``x``, as its Trainer runs it with its defaults (FVU loss, no
    AuxK, the signum optimizer: SignSGD under schedule-free): unit-norm decoder, forward, backward, the
    parallel gradient removed, the optimizer step, the dead-latent counter."""
    import torch
    from schedulefree import ScheduleFreeWrapper
    from sparsify import SparseCoder, SparseCoderConfig  # the bench imports it first, quietly (sparsify_version)
    from sparsify.sign_sgd import SignSGD

    cfg = ours.cfg
    sae = SparseCoder(cfg.d_in, SparseCoderConfig(num_latents=cfg.d_sae, k=cfg.k), dtype=torch.float32)
    with torch.no_grad():
        sae.encoder.weight.copy_(ours.W_enc.T)
        sae.encoder.bias.copy_(ours.b_enc)
        sae.W_dec.copy_(ours.W_dec)
        sae.b_dec.copy_(ours.b_dec)
    lr = 5e-3 / (cfg.d_sae / 2**14) ** 0.5  # its Trainer's default for signum
    optimizer = ScheduleFreeWrapper(SignSGD([{"params": sae.parameters(), "lr": lr}]), momentum=0.95)
    optimizer.train()
    since_fired = torch.zeros(cfg.d_sae, dtype=torch.long)
    did_fire = torch.zeros(cfg.d_sae, dtype=torch.bool)

    def step() -> object:
        sae.set_decoder_norm_to_unit_norm()
        out = sae(x)
        did_fire[out.latent_indices.flatten()] = True
        out.fvu.backward()
        sae.remove_gradient_parallel_to_decoder_directions()
        optimizer.step()
        optimizer.zero_grad()
        with torch.no_grad():
            since_fired.add_(x.shape[0])
            since_fired[did_fire] = 0
            did_fire.zero_()
        return out.fvu

    return step
