"""Matryoshka SAEs' nested prefix groups, light enough for the API (no torch): the services validate a
training's ``matryoshka_widths``, the feature browser filters by group and feature pages name it.

``widths`` are the nested prefix sizes, strictly increasing, the last equal to the SAE's width: prefix
``g`` is latents ``[0, widths[g])`` and each is trained to reconstruct on its own, so group ``g`` (latents
``[widths[g-1], widths[g])``) holds what the smaller prefixes could not afford (Bussmann et al. 2025).
"""

from __future__ import annotations

from bisect import bisect_right

# The default: prefixes of 1/16, 1/8, 1/4, 1/2 and all of the dictionary, so the first group is small
# enough to hold the most general features and each further group doubles the width.
DEFAULT_FRACTIONS = (16, 8, 4, 2, 1)


def default_widths(d_sae: int) -> list[int]:
    """d_sae/16, /8, /4, /2 and d_sae (rounded down, at least 1, duplicates dropped on tiny widths)."""
    return sorted({max(1, d_sae // divisor) for divisor in DEFAULT_FRACTIONS})


def widths_problem(widths: list[int], d_sae: int) -> str | None:
    """Why ``widths`` cannot be a d_sae-wide SAE's groups (a sentence for a VALIDATION_ERROR), or None."""
    if not widths:
        return "matryoshka_widths must name at least one prefix size"
    if widths[0] < 1 or any(b <= a for a, b in zip(widths, widths[1:], strict=False)):
        return "matryoshka_widths must be positive and strictly increasing"
    if widths[-1] != d_sae:
        return f"the last of matryoshka_widths must equal the SAE's width ({d_sae}), not {widths[-1]}"
    return None


def prefix_group(widths: list[int], index: int) -> int:
    """The group (0-based) of latent ``index``: the smallest prefix that holds it."""
    if not 0 <= index < widths[-1]:
        raise IndexError(f"latent {index} is outside an SAE of {widths[-1]} latents")
    return bisect_right(widths, index)


def group_bounds(widths: list[int], group: int) -> tuple[int, int]:
    """Latents [start, stop) of ``group``."""
    return (widths[group - 1] if group > 0 else 0), widths[group]
