"""Target-L0 mode: the sparsity coefficient adapted during training until the SAE's L0 is the one asked for.

An architecture with a sparsity coefficient (sparse, skip, transcoder and gated: ``l1_coefficient``;
jumprelu: ``l0_coefficient``) reaches an L0 that depends on the model, the layer and the width in a way
nobody can guess before training. With ``target_l0`` set, the coefficient becomes a controlled
quantity instead of a setting: it starts at the training's own (the architecture's default unless the
request named one) and after every step a PI controller in log space moves it. With ``L0`` the mean
number of active latents per token in the batch just trained on (measured in the step's forward pass,
before the step learns from that batch: in a first epoch, the L0 on data the SAE has not seen):

    e      = clip(log(L0 + 1) - log(target + 1), -1, 1)     the error, as a log-ratio
    ē     += SMOOTHING * (e - ē)                            its moving average (batch noise out)
    I     += INTEGRAL * pace * e
    coef   = coef_start * exp(I + PROPORTIONAL * ē)         within [MIN_COEFFICIENT, MAX_COEFFICIENT]

Log space because the error is a ratio (twice too many latents pushes as hard at L0 = 200 as at 10) and
the right coefficient spans orders of magnitude between models. The integral term is what reaches the
target exactly; the proportional one is why it does not overshoot: an SAE answers a new coefficient
only after tens to hundreds of steps, and a fresh one starts far denser than any target while its L0
falls on its own. An integral alone keeps pushing through that fall and drives the coefficient past
the point where latents die for good (a dead ReLU latent gets no gradient to come back when the
coefficient later drops); the proportional term lets go as the L0 comes down. The clip bounds how hard
the first, very dense steps push. ``pace`` is the learning-rate schedule's factor at that step (0 to 1):
the weights follow a coefficient only as fast as they can move, so the integral warms up with the
learning rate and slows down as it decays, instead of winding the coefficient up at the end of a run
whose nearly frozen weights no longer answer. While an L1 warm-up (``l1_warmup_steps``) ramps an L1
coefficient in, the controller waits: that ramp is the request's own schedule. At the bounds the
integral stops growing (no wind-up).

Measured on the demo model's layer-2 residual stream (800 samples, expansion 4, 1,000 steps of 256
tokens, held-out L0): `sparse` with its defaults asked for 8 / 16 / 32 ends at 8.5 / 16.0 / 30.4
(explained variance 0.42 / 0.60 / 0.73); at learning rate 1e-3, 9.1 / 17.0 / 31.5.

JumpReLU's coefficient is the weight of its L0 term, whose gradient reaches only the thresholds (the
straight-through estimator gives the encoder none), so its L0 moves only as fast as they do. Adam moves
a log-threshold by about the learning rate per step whatever the coefficient, while a pre-activation,
a sum over d_in weights that each move as much, travels far further: at the run's own rate the
thresholds went from 0.5 to 0.64 in 1,000 steps where L0 = 16 needs about 1.3, the coefficient wound
up to 120 without effect, and the run ended at L0 55 (at 1e-3: 21 after 1,000 steps, then an overshoot
to 9.5 after 2,000 as the wound-up coefficient kept pushing). In target-L0 mode JumpReLU's thresholds
therefore learn THRESHOLD_LR_FACTOR times faster than its weights (``parameter_groups``): they follow
the coefficient within tens of steps and the coefficient hardly leaves its start (1.5 at the end for
16). Same measure as above: asked for 8 / 16 / 32 it ends at 8.4 / 15.8 / 28.9 (explained variance
0.49 / 0.60 / 0.69); for 16 at 1e-3 15.2, after 2,000 steps 16.0 (16.5 at 1e-3), another seed 15.7,
at expansion 8 with batches of 1,024 16.6.
A factor of 10 overshot (11.0 for 16), 20 fell short for 32 (26.5), 50 left more latents never firing.

The controller's state (the starting coefficient, the integral, the average error) is saved in every
checkpoint, so a resumed run (pause, a killed worker) continues on the same trajectory. Each logged step
records the coefficient in use as the metric ``sparsity_coefficient`` next to ``l0``: the live charts
show both converging.
"""

from __future__ import annotations

import math
from typing import Any

# The architectures with a sparsity coefficient, and the SAEConfig field that holds it.
COEFFICIENT_FIELD: dict[str, str] = {
    "sparse": "l1_coefficient",
    "skip": "l1_coefficient",
    "transcoder": "l1_coefficient",
    "gated": "l1_coefficient",
    "jumprelu": "l0_coefficient",
}
# Chosen on the demo model (sparse at L0 8, 16, 32): an integral alone (0.01, 0.03) overshot and killed latents.
PROPORTIONAL = 0.3
INTEGRAL = 0.01  # per step, at the full learning rate
SMOOTHING = 0.05  # the error's moving average: about the last 20 steps
ERROR_CLIP = 1.0
MIN_COEFFICIENT = 1e-4
MAX_COEFFICIENT = 1e3
# JumpReLU's thresholds' learning rate in target-L0 mode, as a multiple of the run's (see the docstring).
THRESHOLD_LR_FACTOR = 30.0


def controlled(encoder_type: str) -> bool:
    """Whether ``target_l0`` applies to this architecture (the k-architectures set their L0 with k)."""
    return encoder_type in COEFFICIENT_FIELD


def coefficient_of(cfg: Any) -> float | None:
    """The sparsity coefficient an SAE's config holds now; None for an architecture without one."""
    name = COEFFICIENT_FIELD.get(cfg.architecture)
    return None if name is None else float(getattr(cfg, name))


def parameter_groups(sae: Any, learning_rate: float) -> list[dict[str, Any]]:
    """The optimizer's parameter groups for a target-L0 run: JumpReLU's thresholds, the controller's
    actuator, at THRESHOLD_LR_FACTOR times ``learning_rate``; everything else (every parameter of the
    other architectures) in the first group, at the optimizer's own rate, which the loop reads the
    schedule's pace from."""
    if sae.cfg.architecture != "jumprelu":
        return [{"params": list(sae.parameters())}]
    weights = [p for name, p in sae.named_parameters() if name != "log_threshold"]
    return [{"params": weights}, {"params": [sae.log_threshold], "lr": learning_rate * THRESHOLD_LR_FACTOR}]


class SparsityControl:
    """The PI controller of one SAEConfig's sparsity coefficient (see the module's docstring); ``apply``
    writes the coefficient into the config before each step, ``update`` moves it after."""

    def __init__(self, cfg: Any, target: float) -> None:
        self.cfg, self.target = cfg, target
        self.field = COEFFICIENT_FIELD[cfg.architecture]
        self.log_start = math.log(min(max(float(getattr(cfg, self.field)), MIN_COEFFICIENT), MAX_COEFFICIENT))
        self.integral = 0.0
        self.average_error = 0.0

    @property
    def coefficient(self) -> float:
        return math.exp(_clamped(self.log_start + self.integral + PROPORTIONAL * self.average_error))

    def apply(self, l1_ramp: float = 1.0) -> bool:
        """Set the config's coefficient for the next step, times the L1 warm-up's ramp (``l1_ramp`` < 1
        while it lasts; it scales an L1 coefficient only). True when the controller may move after it."""
        ramp = l1_ramp if self.field == "l1_coefficient" else 1.0
        setattr(self.cfg, self.field, self.coefficient * ramp)
        return ramp >= 1.0

    def update(self, l0: float, pace: float) -> None:
        """After a step: ``l0``, its batch's mean active latents per token; ``pace``, the learning-rate
        schedule's factor at that step."""
        error = min(max(math.log1p(max(l0, 0.0)) - math.log1p(self.target), -ERROR_CLIP), ERROR_CLIP)
        self.average_error += SMOOTHING * (error - self.average_error)
        self.integral += INTEGRAL * max(pace, 0.0) * error
        # At a bound the integral stops where the bound is: no wind-up to unwind later.
        proportional = PROPORTIONAL * self.average_error
        wanted = self.log_start + self.integral + proportional
        self.integral += _clamped(wanted) - wanted

    def state_dict(self) -> dict[str, float]:
        return {
            "log_start": self.log_start,
            "integral": self.integral,
            "average_error": self.average_error,
            "target": self.target,
        }

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.log_start = float(state["log_start"])
        self.integral, self.average_error = float(state["integral"]), float(state["average_error"])
        self.apply()


def _clamped(log_coefficient: float) -> float:
    return min(max(log_coefficient, math.log(MIN_COEFFICIENT)), math.log(MAX_COEFFICIENT))
