"""The SFT loss as a pure tensor function: token-level NLL with a global normaliser.

Why a given count instead of a mean: a per-micro-batch mean (megatron-core's default, and the
transformers loss before its fix) weights a token by 1 / (loss tokens in its micro-batch), so the
gradient changes with micro-batch size, accumulation, data-parallel size and packing. Dividing
every micro-batch's token sum by the loss-token count of the whole global batch (all micro-batches,
all DP ranks) and summing the gradients gives the gradient of one mean over the global batch,
however it is cut.
"""

from __future__ import annotations

from torch import Tensor


def nll_loss(logprobs: Tensor, loss_mask: Tensor, num_tokens: float) -> Tensor:
    """sum(-logprobs * loss_mask) / num_tokens.

    logprobs: log p(next token) [..., T]; loss_mask: 1 where that token is trained (same shape);
    num_tokens: the loss tokens of the *global* batch (> 0), the same number on every micro-batch
    and rank of one step.
    """
    if logprobs.shape != loss_mask.shape:
        raise ValueError(f"logprobs {tuple(logprobs.shape)} and loss_mask {tuple(loss_mask.shape)} differ in shape")
    if num_tokens <= 0:
        raise ValueError(f"num_tokens must be > 0 (the global batch has no loss tokens), got {num_tokens}")
    return -(logprobs * loss_mask.to(logprobs.dtype)).sum() / num_tokens
