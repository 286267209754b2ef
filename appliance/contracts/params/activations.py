"""Parameters of the extraction job (``activations.extract``): everything the worker needs is
resolved by the API from the model's and the dataset's rows, so the job reads no other row."""

from __future__ import annotations

import msgspec

from appliance.contracts.params.models import HookPoint


class ExtractParams(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    activation_id: str
    model_id: str
    model_path: str
    precision: str
    tokenizer: str  # "demo", or the model's id: the tokenizer stored with the model
    dataset_id: str
    hook_points: list[HookPoint]  # the model's hook points chosen, in the model's order
    d_model: int
    parameters: int
    batch_size: int = 8
    max_samples: int | None = 1000
    context_length: int = 128
    # Positions of these tokens are not stored (appliance.contracts.special_tokens): the tokenizer's
    # special tokens, or ``special_token_ids`` when given; none when off.
    exclude_special_tokens: bool = True
    special_token_ids: list[int] | None = None
