"""SAEs on disk in the field's layouts: SAELens export and import, EleutherAI sparsify import."""

from __future__ import annotations


class UnsupportedSAE(ValueError):
    """Files that are not an SAE the appliance can read as its authors meant; the message names the
    setting or tensor that stands in the way."""
