"""Block-causal attention masks for rows that hold several sequences (packed SFT documents, GRPO
groups sharing one prompt): one implementation, so both get the same per-segment semantics.

A row is described by a segment id per position. A query attends causally to keys of its own
segment, and to keys of the `shared` segment (a GRPO group's prompt) if one is given. Padding gets
segment -1, so it attends only to earlier padding and no query row is fully masked (SDPA would
return NaN for it). Megatron's convention: True = masked out.
"""

from __future__ import annotations

import torch
from torch import Tensor

PAD_SEGMENT = -1


def block_causal_mask(segments: Tensor, shared: int | None = None) -> Tensor:
    """segments [R, L] (int) -> mask [R, 1, L, L] bool, True where attention is not allowed."""
    L = segments.shape[1]
    q, k = segments[:, :, None], segments[:, None, :]
    allowed = k == q
    if shared is not None:
        allowed = allowed | (k == shared)
    allowed = allowed & torch.ones(L, L, dtype=torch.bool, device=segments.device).tril()
    return ~allowed[:, None]


def segment_positions(segments: Tensor) -> Tensor:
    """Positions restarting at 0 at each new segment of a row ([R, L] -> [R, L])."""
    R, L = segments.shape
    idx = torch.arange(L, device=segments.device).expand(R, L)
    starts = torch.ones_like(segments, dtype=torch.bool)
    starts[:, 1:] = segments[:, 1:] != segments[:, :-1]
    first = torch.where(starts, idx, torch.zeros_like(idx)).cummax(dim=1).values
    return idx - first
