"""Turn rollouts into padded training tensors and micro-batches (pure functions, no ranks).

Convention: a sequence is prompt + completion tokens; `logprobs[:, t]` is the log-probability of
`tokens[:, t + 1]`, so every [B, L-1] tensor (masks, old/ref/rollout logprobs) is aligned to the
*predicted* token. The loss mask is 1 exactly on completion tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class TrainBatch:
    tokens: Tensor  # [B, L] int64, right-padded
    mask: Tensor  # [B, L-1] float, 1 on completion tokens (predicted positions)
    rollout_logprobs: Tensor  # [B, L-1] float, the engine's logprobs on completion tokens, 0 elsewhere
    advantages: Tensor  # [B]
    lengths: Tensor  # [B] real tokens per sequence
    old_logprobs: Tensor | None = None  # [B, L-1] policy logprobs before this step's updates (mu > 1)
    prompt_lengths: Tensor | None = None  # [B] prompt tokens per sequence (shared-prompt packing needs it)
    ref_logprobs: Tensor | None = None  # [B, L-1] the reference model's logprobs (beta > 0)

    @property
    def logprob_start(self) -> int:
        """First predicted position any row trains on: the forward skips the vocab projection before it."""
        rows = self.mask.bool().any(dim=1)
        if not bool(rows.any()):
            return 0
        return int(self.mask.bool()[rows].float().argmax(dim=1).min())

    def select(self, idx: Tensor | list[int]) -> TrainBatch:
        idx = torch.as_tensor(idx, dtype=torch.long)
        old = self.old_logprobs[idx] if self.old_logprobs is not None else None
        plen = self.prompt_lengths[idx] if self.prompt_lengths is not None else None
        ref = self.ref_logprobs[idx] if self.ref_logprobs is not None else None
        return TrainBatch(self.tokens[idx], self.mask[idx], self.rollout_logprobs[idx], self.advantages[idx],
                          self.lengths[idx], old, plen, ref)

    def trim(self) -> TrainBatch:
        """Drop padding columns past the longest sequence (after selecting a micro-batch)."""
        L = int(self.lengths.max())
        old = self.old_logprobs[:, : L - 1] if self.old_logprobs is not None else None
        ref = self.ref_logprobs[:, : L - 1] if self.ref_logprobs is not None else None
        return TrainBatch(self.tokens[:, :L], self.mask[:, : L - 1], self.rollout_logprobs[:, : L - 1],
                          self.advantages, self.lengths, old, self.prompt_lengths, ref)


def build_batch(prompt_ids: list[list[int]], completion_ids: list[list[int]],
                rollout_logprobs: list[list[float]], advantages: Tensor, pad_id: int,
                completion_mask: list[bool] | None = None, pad_to_multiple: int = 1) -> TrainBatch:
    """Pad prompt+completion pairs; `completion_mask[i]=False` zeroes a sequence's loss (overlong filter)."""
    if not (len(prompt_ids) == len(completion_ids) == len(rollout_logprobs) == advantages.numel()):
        raise ValueError("prompt_ids, completion_ids, rollout_logprobs and advantages must have equal length")
    lengths = [len(p) + len(c) for p, c in zip(prompt_ids, completion_ids, strict=True)]
    L = max(lengths)
    L = -(-L // pad_to_multiple) * pad_to_multiple
    B = len(prompt_ids)
    tokens = torch.full((B, L), pad_id, dtype=torch.long)
    mask = torch.zeros(B, L - 1)
    lp = torch.zeros(B, L - 1)
    for i, (p, c, r) in enumerate(zip(prompt_ids, completion_ids, rollout_logprobs, strict=True)):
        if len(r) != len(c):
            raise ValueError(f"sequence {i}: {len(c)} completion tokens but {len(r)} rollout logprobs")
        if not p:
            raise ValueError(f"sequence {i}: empty prompt (need at least one token to predict from)")
        tokens[i, : len(p)] = torch.tensor(p)
        if c:
            tokens[i, len(p): len(p) + len(c)] = torch.tensor(c)
            start = len(p) - 1  # position predicting the first completion token
            if completion_mask is None or completion_mask[i]:
                mask[i, start: start + len(c)] = 1.0
            lp[i, start: start + len(c)] = torch.tensor(r, dtype=torch.float32)
    return TrainBatch(tokens, mask, lp, advantages.float(), torch.tensor(lengths),
                      prompt_lengths=torch.tensor([len(p) for p in prompt_ids]))


def micro_batches(lengths: Tensor, micro_batch_size: int, bucket_by_length: bool = True) -> list[list[int]]:
    """Index lists of micro-batches; sorting by length first cuts padding (and so compute) per micro-batch."""
    order = torch.argsort(lengths, descending=True, stable=True).tolist() if bucket_by_length \
        else list(range(len(lengths)))
    return [order[i: i + micro_batch_size] for i in range(0, len(order), micro_batch_size)]


def informative_groups(rewards: Tensor, group_size: int, atol: float = 1e-6) -> Tensor:
    """Per-group bool: False when all rewards of the group are equal (zero advantage: no signal; DAPO)."""
    r = rewards.view(-1, group_size)
    return (r.max(dim=1).values - r.min(dim=1).values) > atol
