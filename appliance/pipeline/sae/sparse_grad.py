"""The k-architectures' selections with gradients that touch only what was selected.

TopK and BatchTopK need every pre-activation to choose, but only the chosen ones carry a gradient. Left to
autograd, the gradient of ``pre`` is scattered into a dense [batch, d_sae] tensor and W_enc's gradient is a
full ``x^T @ dpre`` matmul: as costly as the encoder itself, for k nonzeros per token. Here ``pre`` is
computed without a graph, the chosen values are picked from it by :func:`picked`, whose backward builds
W_enc's gradient from the (token, latent) pairs alone (a sparse-dense matmul, batch x k x d_in work).
"""

from __future__ import annotations

from typing import Any

import torch


class _Picked(torch.autograd.Function):
    """pre[tokens, latents] where pre = x @ W_enc + bias, with gradients for W_enc and bias (and x)."""

    # ctx is Any: torch's FunctionCtx declares neither saved_tensors nor needs_input_grad.
    @staticmethod
    def forward(
        ctx: Any,
        pre: torch.Tensor,
        x: torch.Tensor,
        W_enc: torch.Tensor,
        bias: torch.Tensor,
        tokens: torch.Tensor,
        latents: torch.Tensor,
    ) -> torch.Tensor:
        ctx.save_for_backward(x, W_enc, tokens, latents)
        return pre[tokens, latents]

    @staticmethod
    def backward(
        ctx: Any, grad: torch.Tensor
    ) -> tuple[None, torch.Tensor | None, torch.Tensor | None, Any, None, None]:
        x, W_enc, tokens, latents = ctx.saved_tensors
        # Under bf16 autocast the picked values (and so their gradient) are bf16; the weights are not.
        grad = grad.to(W_enc.dtype)
        d_sae, batch = W_enc.shape[1], x.shape[0]
        grad_x = grad_W = grad_bias = None
        if ctx.needs_input_grad[2]:
            chosen = torch.sparse_coo_tensor(
                torch.stack([latents, tokens]), grad, (d_sae, batch), check_invariants=False
            )
            grad_W = torch.sparse.mm(chosen, x.to(W_enc.dtype)).T
        if ctx.needs_input_grad[3]:
            grad_bias = torch.zeros(d_sae, dtype=grad.dtype, device=grad.device).index_add_(0, latents, grad)
        if ctx.needs_input_grad[1]:
            chosen = torch.sparse_coo_tensor(
                torch.stack([tokens, latents]), grad, (batch, d_sae), check_invariants=False
            )
            grad_x = torch.sparse.mm(chosen, W_enc.T).to(x.dtype)
        return None, grad_x, grad_W, grad_bias, None, None


def picked(
    pre: torch.Tensor,
    x: torch.Tensor,
    W_enc: torch.Tensor,
    bias: torch.Tensor,
    tokens: torch.Tensor,
    latents: torch.Tensor,
) -> torch.Tensor:
    """``pre[tokens, latents]`` (1-D), differentiable as ``(x @ W_enc + bias)[tokens, latents]``: ``pre`` must
    hold those numbers, computed without a graph."""
    out: torch.Tensor = _Picked.apply(pre, x, W_enc, bias, tokens, latents)
    return out


def token_of_each(batch: int, k: int, device: torch.device) -> torch.Tensor:
    """[batch * k]: 0 k times, then 1 k times, ...: the tokens of a per-token top-k's flattened indices."""
    return torch.arange(batch, device=device).repeat_interleave(k)
