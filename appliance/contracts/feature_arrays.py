"""The arrays a feature extraction leaves on disk, and what the API reads from them (numpy only).

Under ``trainings/<id>/features/``:

- ``tokens.npy`` (int32 [T]): the evaluation tokens, sample after sample; ``offsets.npy`` (int64
  [S + 1]): where each sample starts.
- ``indptr.npy`` / ``indices.npy`` / ``values.npy``: the SAE's activations of every token as a
  CSR matrix [T, d_sae] (int64, int32, float16). Sparse SAEs keep a few dozen latents per token,
  so this is small, and every per-feature view (contexts, correlations, heatmaps of stored text)
  is a lookup instead of a model run.
- ``top_values.npy`` / ``top_samples.npy`` / ``top_positions.npy`` ([K, d_sae]): each feature's
  max-activating samples (its max per sample, best first) and where in the sample the max is.
- ``mean.npy`` / ``std.npy`` (float64 [d_sae]): over all tokens, zeros included (for Pearson).

Arrays are memory-mapped: opening a feature set costs nothing, and one feature's view touches a
few pages.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from appliance.data.layout import DataLayout

HIST_EDGES = [round(-3 + 0.25 * i, 2) for i in range(25)]  # a feature's histogram: log10(activation), -3 .. 3
NAMES = (
    "tokens",
    "offsets",
    "indptr",
    "indices",
    "values",
    "top_values",
    "top_samples",
    "top_positions",
    "mean",
    "std",
)


def features_dir(data_dir: Path, training_id: str) -> Path:
    return DataLayout(data_dir).features(training_id)


class FeatureArrays:
    def __init__(self, folder: Path):
        for name in NAMES:
            setattr(self, name, np.load(folder / f"{name}.npy", mmap_mode="r"))
        self.tokens: np.ndarray
        self.offsets: np.ndarray
        self.indptr: np.ndarray
        self.indices: np.ndarray
        self.values: np.ndarray
        self.top_values: np.ndarray
        self.top_samples: np.ndarray
        self.top_positions: np.ndarray
        self.mean: np.ndarray
        self.std: np.ndarray

    @property
    def n_tokens(self) -> int:
        return int(self.tokens.shape[0])

    @property
    def d_sae(self) -> int:
        return int(self.mean.shape[0])

    def latent_at(self, rows: np.ndarray, latent: int) -> np.ndarray:
        """The latent's activation at each token row (0 where it is silent)."""
        out = np.zeros(len(rows), dtype=np.float32)
        for i, row in enumerate(rows):
            start, end = int(self.indptr[row]), int(self.indptr[row + 1])
            hit = np.nonzero(self.indices[start:end] == latent)[0]
            if hit.size:
                out[i] = float(self.values[start + hit[0]])
        return out

    def context(self, sample: int, position: int, latent: int, window: int) -> dict[str, Any]:
        """Token ids and the latent's values around ``position`` of ``sample``."""
        begin, end = int(self.offsets[sample]), int(self.offsets[sample + 1])
        center = begin + position
        lo, hi = max(begin, center - window), min(end, center + window + 1)
        rows = np.arange(lo, hi)
        return {
            "sample": int(sample),
            "position": int(position),
            "token_ids": self.tokens[lo:hi].tolist(),
            "activations": [round(float(v), 4) for v in self.latent_at(rows, latent)],
            "max_index": int(center - lo),
        }

    def examples(self, latent: int, limit: int, window: int) -> list[dict[str, Any]]:
        found = []
        for rank in range(min(limit, self.top_values.shape[0])):
            value = float(self.top_values[rank, latent])
            if value <= 0:
                break
            example = self.context(
                int(self.top_samples[rank, latent]), int(self.top_positions[rank, latent]), latent, window
            )
            example["max_activation"] = round(value, 4)
            found.append(example)
        return found

    def quantile_examples(self, latent: int, bins: int = 4, per_bin: int = 2, window: int = 8) -> list[dict[str, Any]]:
        """Contexts from across the feature's activation range: every token where it fires, sorted by
        value and cut into ``bins`` quantile bins, ``per_bin`` evenly spaced picks from each
        (strongest bin first)."""
        rows, values = self.rows_of(latent)
        if rows.size == 0:
            return []
        order = np.argsort(-values, kind="stable")
        found = []
        for b, part in enumerate(np.array_split(order, bins)):
            if part.size == 0:
                continue
            for i in part[np.linspace(0, part.size - 1, min(per_bin, part.size)).astype(int)]:
                row = int(rows[i])
                sample = int(np.searchsorted(self.offsets, row, side="right") - 1)
                example = self.context(sample, row - int(self.offsets[sample]), latent, window)
                example["activation"] = round(float(values[i]), 4)
                example["quantile"] = f"{100 * b // bins}-{100 * (b + 1) // bins}% from the top"
                found.append(example)
        return found

    def rows_of(self, latent: int) -> tuple[np.ndarray, np.ndarray]:
        """(token rows, values) where the latent fires. A column scan of the CSR: fast enough for one
        latent on an evaluation set (a few million stored values)."""
        hits = np.nonzero(self.indices == latent)[0]
        rows = np.searchsorted(self.indptr, hits, side="right") - 1
        return rows, self.values[hits].astype(np.float64)

    def correlations(self, latent: int, top: int = 20) -> list[tuple[int, float]]:
        """Pearson correlation of this latent with every other over all evaluation tokens, strongest
        first: E[xy] from the rows where this latent fires (elsewhere x = 0), means and stds stored."""
        rows, x = self.rows_of(latent)
        starts = np.asarray(self.indptr[rows])
        lengths = np.asarray(self.indptr[rows + 1]) - starts
        # Every stored entry of those rows, flattened: start of its row + its offset within the row.
        flat = np.repeat(starts - np.cumsum(lengths) + lengths, lengths) + np.arange(int(lengths.sum()))
        weights = np.repeat(x, lengths) * np.asarray(self.values[flat], dtype=np.float64)
        sums = np.bincount(np.asarray(self.indices[flat]), weights=weights, minlength=self.d_sae)
        n = self.n_tokens
        std = np.asarray(self.std, dtype=np.float64)
        mean = np.asarray(self.mean, dtype=np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            corr = (sums / n - mean[latent] * mean) / (std[latent] * std)
        corr[~np.isfinite(corr)] = 0.0
        corr[latent] = 0.0
        order = np.argsort(-np.abs(corr))[:top]
        return [(int(j), round(float(corr[j]), 4)) for j in order if corr[j] != 0]


@lru_cache(maxsize=4)
def open_arrays(folder: str, stamp: float) -> FeatureArrays:
    """Cached per folder and its modification time (a new extraction replaces the folder)."""
    return FeatureArrays(Path(folder))


def arrays_for(folder: Path) -> FeatureArrays:
    """The arrays of an extraction folder (``DataLayout.features``), opened once per extraction."""
    return open_arrays(str(folder), (folder / "indptr.npy").stat().st_mtime)
