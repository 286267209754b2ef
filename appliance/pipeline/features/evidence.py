"""What a language model sees of one feature, taken from its extraction's stored arrays
(``appliance.contracts.feature_arrays``): the explainer's excerpts, and the held-out contexts its judges see.

The two never share a sample. The extraction holds every fifth evaluation sample out
(``extract.HELD_OUT_EVERY``: its top tokens never come from them), and so does this module:

- **The explainer** sees excerpts from the other samples: the feature's ``examples`` strongest samples (the
  extraction's top-k) and as many excerpts from across its activation range (its firing positions sorted by
  activation, picked at evenly spaced ranks), each ``WINDOW`` tokens around the position, the tokens where
  it fires marked.
- **The judges** see held-out contexts only, ``WINDOW`` tokens each. Activating: the position fires, picked
  at evenly spaced ranks across the range. Non-activating: a window of a held-out sample where the feature is
  0 throughout, at a random (seeded) place. For fuzzing, the activating contexts come twice: highlighted where
  the feature fires, and highlighted at as many random positions where it does not (never a special token).

"Fires" means above ``extract.FIRE_SHARE`` of the feature's max, as for the interpretability score: weaker
activations count as neither activating nor silent. Everything is seeded by the feature's index, so the
same extraction shows a judge the same contexts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from appliance.contracts.feature_arrays import FeatureArrays
from appliance.pipeline.features.extract import FIRE_SHARE, HELD_OUT_EVERY

WINDOW = 16  # tokens in an excerpt or a context
BEFORE = 11  # of which before the position (the model reads left to right: the cause is mostly before)
SEED = 19
MIN_LENGTH = 4  # a held-out sample shorter than this gives no non-activating window
TRIES = 50  # random windows tried per non-activating context wanted


@dataclass
class Excerpt:
    """Tokens (as text) and the positions marked in them. ``truth``: for a judge, whether the feature fires
    there (detection) or is marked where it fires (fuzzing)."""

    tokens: list[str]
    marked: list[int]
    activation: float = 0.0  # the feature's strongest activation in the excerpt
    truth: bool = True
    kind: str = ""  # "top", "range", "activating", "silent", "highlighted", "random"
    sample: int = 0  # the evaluation sample it comes from (held out: sample % HELD_OUT_EVERY == 4)


@dataclass
class Evidence:
    explainer: list[Excerpt] = field(default_factory=list)
    detection: list[Excerpt] = field(default_factory=list)
    fuzzing: list[Excerpt] = field(default_factory=list)
    held_out_firing: int = 0  # held-out positions where it fires: what the judges' contexts come from

    @property
    def judgeable(self) -> bool:
        """Both classes for both judges (a balanced accuracy needs both)."""
        return all(
            any(e.truth for e in shown) and any(not e.truth for e in shown) for shown in (self.detection, self.fuzzing)
        )


class _Feature:
    """One feature's firing positions and its windows."""

    def __init__(self, arrays: FeatureArrays, latent: int, text: Callable[[int], str], excluded: set[int]):
        self.arrays, self.latent, self.text, self.excluded = arrays, latent, text, excluded
        rows, values = arrays.rows_of(latent)
        order = np.argsort(rows, kind="stable")
        self.rows, self.values = np.asarray(rows)[order], np.asarray(values)[order]  # every row where it is > 0
        self.offsets = np.asarray(arrays.offsets)
        self.samples = np.searchsorted(self.offsets, self.rows, side="right") - 1
        self.threshold = FIRE_SHARE * float(self.values.max()) if len(self.values) else np.inf
        self.fires = self.values > self.threshold
        self.held = self.samples % HELD_OUT_EVERY == HELD_OUT_EVERY - 1

    def sample_of(self, row: int) -> int:
        return int(np.searchsorted(self.offsets, row, side="right") - 1)

    def window(self, row: int) -> tuple[int, int]:
        """[lo, hi) token rows of a WINDOW around ``row``, inside its sample."""
        sample = self.sample_of(row)
        begin, end = int(self.offsets[sample]), int(self.offsets[sample + 1])
        lo = max(begin, row - BEFORE)
        hi = min(end, lo + WINDOW)
        return max(begin, hi - WINDOW), hi

    def values_in(self, lo: int, hi: int) -> np.ndarray:
        out = np.zeros(hi - lo)
        a, b = np.searchsorted(self.rows, [lo, hi])
        out[self.rows[a:b] - lo] = self.values[a:b]
        return out

    def excerpt(self, row: int, kind: str) -> Excerpt:
        """The window around ``row``, marked where the feature fires (and at ``row``, a weaker top sample's
        strongest token)."""
        lo, hi = self.window(row)
        values = self.values_in(lo, hi)
        marked = set(np.nonzero(values > self.threshold)[0].tolist()) | ({row - lo} if values[row - lo] > 0 else set())
        return Excerpt(
            [self.text(int(t)) for t in self.arrays.tokens[lo:hi]],
            sorted(int(i) for i in marked),
            round(float(values.max()), 4),
            True,
            kind,
            self.sample_of(row),
        )

    def randomly_marked(self, row: int, rng: np.random.Generator) -> Excerpt | None:
        """The window around ``row`` marked at as many positions where the feature is silent (never a special
        token) as it fires at; None when the window has no such positions."""
        shown = self.excerpt(row, "random")
        lo, hi = self.window(row)
        values = self.values_in(lo, hi)
        ids = self.arrays.tokens[lo:hi]
        free = [i for i in range(hi - lo) if values[i] == 0 and int(ids[i]) not in self.excluded]
        if not free:
            return None
        count = min(max(len(shown.marked), 1), len(free))
        shown.marked = sorted(int(i) for i in rng.choice(free, size=count, replace=False))
        shown.truth = False
        return shown

    def silent(self, rng: np.random.Generator, count: int) -> list[Excerpt]:
        """Up to ``count`` held-out windows where the feature is 0 throughout."""
        held = np.arange(HELD_OUT_EVERY - 1, len(self.offsets) - 1, HELD_OUT_EVERY)
        lengths = self.offsets[held + 1] - self.offsets[held]
        held = held[lengths >= MIN_LENGTH]
        found: list[Excerpt] = []
        used: set[tuple[int, int]] = set()
        for _ in range(TRIES * count):
            if len(found) == count or len(held) == 0:
                break
            sample = int(rng.choice(held))
            begin, end = int(self.offsets[sample]), int(self.offsets[sample + 1])
            lo = begin + int(rng.integers(0, max(1, end - begin - WINDOW + 1)))
            hi = min(end, lo + WINDOW)
            a, b = np.searchsorted(self.rows, [lo, hi])
            if a != b or (lo, hi) in used:
                continue
            used.add((lo, hi))
            tokens = [self.text(int(t)) for t in self.arrays.tokens[lo:hi]]
            found.append(Excerpt(tokens, [], 0.0, False, "silent", sample))
        return found


def spread(rows: np.ndarray, values: np.ndarray, count: int) -> list[int]:
    """``count`` of ``rows`` at evenly spaced ranks of their values, strongest first."""
    if count <= 0 or len(rows) == 0:
        return []
    order = np.argsort(-values, kind="stable")
    picks = np.unique(np.linspace(0, len(order) - 1, min(count, len(order))).round().astype(int))
    return [int(rows[order[i]]) for i in picks]


def gather(
    arrays: FeatureArrays,
    latent: int,
    text: Callable[[int], str],
    *,
    examples: int,
    per_class: int,
    excluded: set[int] | None = None,
    judged: bool = True,
) -> Evidence:
    """The explainer's excerpts and (``judged``) the judges' contexts of ``latent`` (module docstring)."""
    feature = _Feature(arrays, latent, text, excluded or set())
    rng = np.random.default_rng([SEED, latent])
    evidence = Evidence()
    top_used: set[int] = set()
    for rank in range(arrays.top_values.shape[0]):
        sample = int(arrays.top_samples[rank, latent])
        if len(evidence.explainer) == examples or float(arrays.top_values[rank, latent]) <= 0:
            break
        if sample % HELD_OUT_EVERY == HELD_OUT_EVERY - 1:
            continue
        top_used.add(sample)
        row = int(arrays.offsets[sample]) + int(arrays.top_positions[rank, latent])
        evidence.explainer.append(feature.excerpt(row, "top"))
    shown = feature.fires & ~feature.held & ~np.isin(feature.samples, list(top_used))
    if not shown.any():  # every firing sample is a top one already: take its other positions
        shown = feature.fires & ~feature.held
    for row in spread(feature.rows[shown], feature.values[shown], examples):
        evidence.explainer.append(feature.excerpt(row, "range"))
    scoring = feature.fires & feature.held
    evidence.held_out_firing = int(scoring.sum())
    if not judged:
        return evidence
    picks = spread(feature.rows[scoring], feature.values[scoring], 2 * per_class)
    # Alternate ranks: detection's (and fuzzing's correctly highlighted) contexts and fuzzing's random ones
    # both cover the range.
    shown_rows, other_rows = picks[0::2], picks[1::2] or picks[0::2]
    evidence.detection = [feature.excerpt(row, "activating") for row in shown_rows]
    evidence.detection += feature.silent(rng, len(shown_rows))
    evidence.fuzzing = [feature.excerpt(row, "highlighted") for row in shown_rows]
    randoms = (feature.randomly_marked(row, rng) for row in other_rows)
    evidence.fuzzing += [e for e in randoms if e is not None]
    return evidence
