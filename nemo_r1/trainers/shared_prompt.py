"""GRPO micro-batches where each group's G completions share one copy of their prompt.

Every sample of a GRPO group starts with the same prompt, so a padded batch runs the prompt G
times through the model. Here a group is one row: the prompt once, then the G completions, each
attending to the prompt and to itself only (block mask, positions restarting after the prompt).
The logits, loss and gradients are the same as G separate rows (the prompt's activations receive
the sum of the G completions' gradients, which is what G copies would add up to); the model sees
p + sum(n_j) tokens instead of G * p + sum(n_j). With the demo's few-shot prompt that is ~2.5x
fewer tokens per step.

The loss keeps the per-sample [B, T] layout of `TrainBatch` (mask, advantages, old/rollout
logprobs): the forward scatters the packed logprobs back into it (`models.forward.LogprobLayout`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from nemo_r1.data.masks import block_causal_mask
from nemo_r1.models.forward import LogprobLayout
from nemo_r1.trainers.batching import TrainBatch


@dataclass
class SharedPromptBatch:
    """A micro-batch of whole groups: packed model inputs + the samples' TrainBatch fields."""

    tokens: Tensor  # [R, Lp] one row per group
    position_ids: Tensor  # [R, Lp]
    attention_mask: Tensor  # [R, 1, Lp, Lp] bool, True = masked
    logprob_layout: LogprobLayout
    logprob_start: int
    samples: TrainBatch  # the same sequences in the usual per-sample layout (trimmed)

    # what the loss and metrics read, in the per-sample layout
    @property
    def mask(self) -> Tensor:
        return self.samples.mask

    @property
    def advantages(self) -> Tensor:
        return self.samples.advantages

    @property
    def rollout_logprobs(self) -> Tensor:
        return self.samples.rollout_logprobs

    @property
    def old_logprobs(self) -> Tensor | None:
        return self.samples.old_logprobs

    @property
    def ref_logprobs(self) -> Tensor | None:
        return self.samples.ref_logprobs

    @property
    def lengths(self) -> Tensor:
        return self.samples.lengths


def groups_share_prompts(batch: TrainBatch, group_size: int) -> bool:
    """True when the batch is whole groups whose members have identical prompt tokens."""
    if batch.prompt_lengths is None or group_size < 2 or batch.tokens.shape[0] % group_size:
        return False
    p = batch.prompt_lengths.view(-1, group_size)
    if not bool((p == p[:, :1]).all()):
        return False
    for g in range(p.shape[0]):
        rows = batch.tokens[g * group_size:(g + 1) * group_size, : int(p[g, 0])]
        if not bool((rows == rows[:1]).all()):
            return False
    return True


def pack_groups(batch: TrainBatch, group_size: int, groups: list[int]) -> SharedPromptBatch:
    """One micro-batch from whole groups of `batch` (group g = samples g*G .. g*G+G-1)."""
    assert batch.prompt_lengths is not None
    idx = [g * group_size + j for g in groups for j in range(group_size)]
    samples = batch.select(idx).trim()
    rows: list[list[int]] = []
    pos: list[list[int]] = []
    seg: list[list[int]] = []
    dst_b, dst_t, src_r, src_p = [], [], [], []
    ex_b, ex_t, ex_r, ex_p, ex_tgt = [], [], [], [], []
    for r, g in enumerate(groups):
        first = g * group_size
        p = int(batch.prompt_lengths[first])
        row = batch.tokens[first, :p].tolist()
        rp, rs = list(range(p)), [0] * p
        for j in range(group_size):
            i, b = first + j, r * group_size + j
            comp = batch.tokens[i, p: int(batch.lengths[i])].tolist()
            off = len(row)
            for k in range(len(comp)):
                if k == 0 and j > 0:  # the prompt's last position predicts c_j[0] too
                    ex_b.append(b), ex_t.append(p - 1), ex_r.append(r), ex_p.append(p - 1), ex_tgt.append(comp[0])
                else:  # next packed token: c_0[0] after the prompt, then c_j[k] after c_j[k-1]
                    dst_b.append(b), dst_t.append(p - 1 + k), src_r.append(r)
                    src_p.append(p - 1 if k == 0 else off + k - 1)
            row += comp
            rp += list(range(p, p + len(comp)))
            rs += [j + 1] * len(comp)
        rows.append(row), pos.append(rp), seg.append(rs)
    L = max(len(x) for x in rows)
    R = len(rows)
    tokens = torch.zeros(R, L, dtype=torch.long)
    position_ids = torch.zeros(R, L, dtype=torch.long)
    segment = torch.full((R, L), -1, dtype=torch.long)  # padding: its own segment
    for r in range(R):
        n = len(rows[r])
        tokens[r, :n] = torch.tensor(rows[r])
        position_ids[r, :n] = torch.tensor(pos[r])
        position_ids[r, n:] = torch.arange(n, L)
        segment[r, :n] = torch.tensor(seg[r])
    mask = block_causal_mask(segment, shared=0)  # the prompt, or the same completion (or padding run)
    T = samples.tokens.shape[1] - 1
    layout = LogprobLayout(
        shape=(len(idx), T), dst=(torch.tensor(dst_b, dtype=torch.long), torch.tensor(dst_t, dtype=torch.long)),
        src=(torch.tensor(src_r, dtype=torch.long), torch.tensor(src_p, dtype=torch.long)),
        extra_dst=(torch.tensor(ex_b, dtype=torch.long), torch.tensor(ex_t, dtype=torch.long)),
        extra_src=(torch.tensor(ex_r, dtype=torch.long), torch.tensor(ex_p, dtype=torch.long)),
        extra_target=torch.tensor(ex_tgt, dtype=torch.long))
    start = min(int(batch.prompt_lengths[g * group_size]) for g in groups) - 1
    return SharedPromptBatch(tokens, position_ids, mask, layout, max(start, 0), samples)


def shared_prompt_micro_batches(batch: TrainBatch, group_size: int, micro_batch_size: int) -> list[SharedPromptBatch]:
    """Whole groups per micro-batch (micro_batch_size // G of them, at least one), longest first."""
    n_groups = batch.tokens.shape[0] // group_size
    packed_len = torch.stack([
        batch.prompt_lengths[g * group_size] + (batch.lengths - batch.prompt_lengths)[g * group_size:(g + 1) * group_size].sum()
        for g in range(n_groups)])
    order = torch.argsort(packed_len, descending=True, stable=True).tolist()
    per = max(1, micro_batch_size // group_size)
    return [pack_groups(batch, group_size, order[i: i + per]) for i in range(0, n_groups, per)]
