"""Exact top-p (nucleus) filtering without sorting the vocabulary, for vLLM's CPU sampler.

vLLM's PyTorch top-p path (the one its CPU worker uses) sorts every row of the [batch, vocab]
logits each decode step; at 256 sequences x 49k vocabulary that sort costs ~0.4 s on 2 cores,
about as much as the model's own step. The nucleus is almost always a few dozen tokens, so we take
the top `candidates` logits (`torch.topk`, ~20x cheaper), compute their probabilities against the
full-vocab normaliser, and keep the same set vLLM keeps: token j survives iff the probability mass
strictly above it is < p (vLLM: the ascending cumulative mass up to and including j is > 1 - p).
Rows whose nucleus does not fit in the candidates, or where some token's mass lies within
`margin` of p (where two fp32 summation orders could disagree), go through vLLM's own function,
so the kept set equals vLLM's. GPU engines use vLLM's Triton/FlashInfer kernels and are untouched.
`nemo_r1.platform.install_fast_top_p` routes vLLM's CPU sampler here.
No library offers this (vLLM's only sort-free path is top-k alone), hence the hand-written code.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

Fn = Callable[[torch.Tensor, "torch.Tensor | None", "torch.Tensor | None"], torch.Tensor]

_MARGIN = 1e-4


def top_k_top_p(logits: torch.Tensor, k: torch.Tensor | None, p: torch.Tensor | None,
                *, candidates: int = 256, margin: float = _MARGIN,
                fallback: Fn | None = None) -> torch.Tensor:
    """Mask `logits` (in place, like vLLM) outside top-k and the top-p nucleus, per row."""
    from vllm.v1.sample.ops.topk_topp_sampler import apply_top_k_only, apply_top_k_top_p_pytorch

    fallback = fallback or (lambda x, kk, pp: apply_top_k_top_p_pytorch(x, kk, pp, allow_cpu_sync=True))
    if p is None:
        return fallback(logits, k, None)
    if k is not None:
        # top-k first (vLLM's order): keeps every logit >= the k-th largest, no sort
        logits = apply_top_k_only(logits, k.clone())
    n_vocab = logits.shape[-1]
    c = min(candidates, n_vocab)
    vals, idx = logits.topk(c, dim=-1)  # descending
    lse = logits.logsumexp(dim=-1, keepdim=True)
    probs = (vals.float() - lse.float()).exp()
    cum = probs.cumsum(dim=-1)
    above = cum - probs  # mass strictly above each candidate
    pp = p.to(above.dtype).unsqueeze(1)
    keep = above < pp
    # exact only if the first dropped token is among the candidates (or every token is kept)
    # and no candidate sits within `margin` of the threshold
    fits = (cum[:, -1:] >= pp + margin).squeeze(1) | (c == n_vocab)
    near = ((above - pp).abs() < margin).any(dim=1)
    ok = fits & ~near
    out = torch.full_like(logits, float("-inf"))
    out.scatter_(1, idx, torch.where(keep, vals, torch.full_like(vals, float("-inf"))))
    bad = (~ok).nonzero().squeeze(1)
    if bad.numel():
        out[bad] = fallback(logits[bad].clone(), None, p[bad])
    logits.copy_(out)
    return logits
