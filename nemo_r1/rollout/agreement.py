"""How far the engine's logprobs are from the trainer's, and the truncated importance weight that
corrects for it.

The engine samples with its own kernels (and on GPU in bf16), so the behaviour policy is not
exactly the policy being trained. `train/logprob_diff` tracks the gap on generated tokens; the
truncated importance-sampling (TIS) weight min(exp(logp_train_old - logp_rollout), cap) reweights
the loss per token (it is the same formula `nemo_r1.algorithms.grpo.policy_loss` applies when given
`rollout_logprobs` and `tis_cap`).
"""

from __future__ import annotations

import torch
from torch import Tensor


def logprob_diff(train_logprobs: Tensor, rollout_logprobs: Tensor, mask: Tensor) -> dict[str, float]:
    """Mean and max |logp_train - logp_rollout| over tokens where mask is 1 (generated tokens).

    Returns `train/logprob_diff` (the mean), `train/logprob_diff_max` and `rollout/tokens_compared`.
    """
    if train_logprobs.shape != rollout_logprobs.shape or train_logprobs.shape != mask.shape:
        raise ValueError(f"shapes differ: train {tuple(train_logprobs.shape)}, rollout "
                         f"{tuple(rollout_logprobs.shape)}, mask {tuple(mask.shape)}")
    m = mask.bool()
    n = int(m.sum())
    if n == 0:
        return {"train/logprob_diff": 0.0, "train/logprob_diff_max": 0.0, "rollout/tokens_compared": 0.0}
    d = (train_logprobs.float() - rollout_logprobs.float()).abs()[m]
    return {"train/logprob_diff": float(d.mean()), "train/logprob_diff_max": float(d.max()),
            "rollout/tokens_compared": float(n)}


def truncated_is_weight(train_logprobs: Tensor, rollout_logprobs: Tensor, cap: float) -> Tensor:
    """min(exp(logp_train_old - logp_rollout), cap), detached; 1 where the two agree."""
    if cap <= 0:
        raise ValueError(f"tis cap={cap} must be > 0")
    w = torch.exp(train_logprobs.float() - rollout_logprobs.float())
    return torch.clamp(w, max=cap).detach()


def diff_of_lists(a: list[list[float]], b: list[list[float]]) -> dict[str, float]:
    """The same statistics for ragged per-sequence lists (e.g. engine.score vs trainer logprobs)."""
    if len(a) != len(b):
        raise ValueError(f"{len(a)} vs {len(b)} sequences")
    flat_a, flat_b = [], []
    for i, (x, y) in enumerate(zip(a, b, strict=True)):
        if len(x) != len(y):
            raise ValueError(f"sequence {i}: {len(x)} vs {len(y)} logprobs")
        flat_a += x
        flat_b += y
    ta, tb = torch.tensor(flat_a), torch.tensor(flat_b)
    return logprob_diff(ta, tb, torch.ones_like(ta))
