"""The training batch order: deterministic per seed, and a resume at any step (across epochs and
shards) yields exactly the batches the uninterrupted run would have seen next."""

from __future__ import annotations

import json

import torch
from safetensors.torch import save_file

from appliance.pipeline.activations.source import ActivationSource


def test_resume_at_any_step_continues_the_same_batch_sequence(tmp_path) -> None:
    sizes = [300, 170, 230]
    for index, n in enumerate(sizes):
        base = sum(sizes[:index])
        save_file(
            {"activations": torch.arange(base, base + n, dtype=torch.float16).unsqueeze(1).repeat(1, 4)},
            str(tmp_path / f"blocks.0.hook_resid_post_{index:04d}.safetensors"),
        )
    (tmp_path / "manifest.json").write_text(
        json.dumps({"shards": [{"index": i, "tokens": n} for i, n in enumerate(sizes)], "d_model": 4})
    )
    source = ActivationSource(tmp_path, "blocks.0.hook_resid_post", None)
    full = source.batches(64, seed=3, start_step=0)
    reference = [next(full)[0][:, 0].tolist() for _ in range(40)]  # several epochs (about 10 batches each)
    held_out = set(source.held_out()[0][:, 0].tolist())
    assert not held_out & {v for batch in reference for v in batch}  # never trains on held-out tokens
    for start in (1, 9, 10, 11, 23, 37):
        resumed = source.batches(64, seed=3, start_step=start)
        assert [next(resumed)[0][:, 0].tolist() for _ in range(40 - start)] == reference[start:], start
    other = source.batches(64, seed=4, start_step=0)
    assert next(other)[0][:, 0].tolist() != reference[0]
