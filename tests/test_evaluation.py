"""The spliced-model evaluation against direct computations: a perfect SAE recovers everything with
zero KL, an SAE that outputs zeros recovers nothing, and the original CE equals the model's own loss."""

from __future__ import annotations

import torch
import transformers

from appliance.pipeline.sae.evaluation.splice import evaluate

torch.set_num_threads(1)


class _Stub:
    def __init__(self, fn):
        self.reconstruct = fn


def test_evaluation_bounds_and_original_loss() -> None:
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(
        transformers.GPT2Config(vocab_size=50, n_embd=32, n_layer=2, n_head=4, n_positions=32)
    ).eval()
    module = model.transformer.h[0]
    batches = [[[1, 5, 7, 9, 2, 3], [4, 4, 8]], [[10, 11, 12, 13]]]
    perfect = evaluate(model, module, _Stub(lambda x: x), batches)
    assert perfect["ce_loss_with_sae"] == perfect["ce_loss_original"] and perfect["ce_loss_recovered"] == 1.0
    assert abs(perfect["kl_divergence"]) < 1e-6
    useless = evaluate(model, module, _Stub(torch.zeros_like), batches)
    assert useless["ce_loss_recovered"] == 0.0
    # The original CE is the model's own next-token loss over the same (unpadded) tokens.
    losses, count = 0.0, 0
    for batch in batches:
        for ids in batch:
            t = torch.tensor([ids])
            with torch.no_grad():
                losses += model(t, labels=t).loss.item() * (len(ids) - 1)
            count += len(ids) - 1
    assert abs(perfect["ce_loss_original"] - losses / count) < 1e-4 and perfect["eval_tokens"] == count
