"""GRPO advantages and the clipped policy loss (its variants: `loss_variants.LOSS_VARIANTS`) as pure
tensor functions.

Shapes: B sequences (prompts x generations), T completion tokens. Nothing here knows about ranks:
to make gradient accumulation and data parallelism give the same gradient as one big batch, the
caller passes the *global* normaliser (`num_tokens` / `num_sequences` summed over micro-batches and
DP ranks) and sums the resulting gradients.
"""

from __future__ import annotations

import torch
from torch import Tensor

from nemo_r1.algorithms.loss_variants import Counts, get_loss_variant

SCALES = ("group", "batch", "none")


def compute_advantages(rewards: Tensor, group_size: int, scale: str = "group",
                       leave_one_out: bool = False, eps: float = 1e-4, valid: Tensor | None = None) -> Tensor:
    """Group-relative advantages; rewards of one prompt are `group_size` consecutive entries.

    `valid` marks the scorable samples: the baseline and the std are taken over those only (an
    unscorable sample filled with its group's mean would shrink the std and inflate the others'
    advantages), and an unscorable sample's own advantage is 0."""
    if scale not in SCALES:
        raise ValueError(f"scale={scale!r} is not one of {SCALES}")
    if rewards.dim() != 1 or rewards.numel() % group_size:
        raise ValueError(f"rewards must be 1-D with a multiple of group_size={group_size} entries, "
                         f"got shape {tuple(rewards.shape)}")
    if leave_one_out and group_size < 2:
        raise ValueError("leave_one_out needs group_size >= 2")
    ok = torch.ones(rewards.shape, dtype=torch.bool) if valid is None else valid.bool().view(-1)
    r = rewards.float().view(-1, group_size)
    v = ok.view(-1, group_size).float()
    k = v.sum(dim=1, keepdim=True)
    total = (r * v).sum(dim=1, keepdim=True)
    mean = total / k.clamp(min=1)
    # leave-one-out: the mean of the *other* scorable members
    baseline = (total - r * v) / (k - v).clamp(min=1) if leave_one_out else mean
    adv = (r - baseline) * v
    if scale == "group":
        # unbiased std over the scorable members; a group with fewer than two has no spread (0)
        var = (((r - mean) * v) ** 2).sum(dim=1, keepdim=True) / (k - 1).clamp(min=1)
        adv = adv / (var.sqrt() + eps)
    elif scale == "batch":
        scored = rewards.float().view(-1)[ok]
        adv = adv / ((scored.std() if scored.numel() > 1 else scored.new_zeros(())) + eps)
    return adv.view(-1)


def policy_loss(logprobs: Tensor, old_logprobs: Tensor, advantages: Tensor, mask: Tensor, *,
                loss_type: str = "dapo", eps_low: float = 0.2, eps_high: float = 0.28, beta: float = 0.0,
                ref_logprobs: Tensor | None = None, max_completion_length: int | None = None,
                dual_clip: float | None = None, rollout_logprobs: Tensor | None = None,
                tis_cap: float | None = None, num_tokens: float | None = None,
                num_sequences: float | None = None, num_micro_batches: float | None = None
                ) -> tuple[Tensor, dict[str, float]]:
    """Clipped surrogate (+ k3 KL, x truncated IS weight) aggregated by `loss_type`, a key of
    `LOSS_VARIANTS` (each says which normaliser it divides by).

    `num_tokens` and `num_sequences` default to this batch's own counts; pass global counts so
    that micro-batches and DP ranks add up to the full-batch loss (`num_micro_batches`: their
    number, for bnpo's average of micro-batch means).
    """
    variant = get_loss_variant(loss_type)
    if beta > 0 and ref_logprobs is None:
        raise ValueError("beta > 0 needs ref_logprobs (the reference model's logprobs)")
    mask = mask.to(logprobs.dtype)
    adv = advantages.to(logprobs.dtype).unsqueeze(1)
    log_ratio = logprobs - old_logprobs
    ratio = torch.exp(log_ratio)
    unclipped = -adv * ratio
    clipped = -adv * torch.clamp(ratio, 1.0 - eps_low, 1.0 + eps_high)
    per_token = torch.maximum(unclipped, clipped)
    if dual_clip is not None:
        if dual_clip <= 1.0:
            raise ValueError(f"dual_clip={dual_clip} must be > 1")
        per_token = torch.where(adv < 0, torch.minimum(per_token, -adv * dual_clip), per_token)

    kl = torch.zeros_like(logprobs)
    if ref_logprobs is not None:
        d = ref_logprobs - logprobs
        kl = torch.exp(d) - d - 1.0  # k3 estimator: unbiased, always >= 0
        if beta > 0:
            per_token = per_token + beta * kl

    tis = None
    if rollout_logprobs is not None and tis_cap is not None:
        tis = torch.clamp(torch.exp(old_logprobs - rollout_logprobs), max=tis_cap).detach()
        per_token = per_token * tis

    loss = variant.aggregate(per_token * mask, mask, Counts(num_tokens, num_sequences, max_completion_length,
                                                                num_micro_batches))

    with torch.no_grad():
        n = mask.sum().clamp(min=1)
        low = ((ratio < 1.0 - eps_low) & (adv < 0)).to(mask.dtype) * mask
        high = ((ratio > 1.0 + eps_high) & (adv > 0)).to(mask.dtype) * mask
        big = torch.finfo(ratio.dtype).max
        metrics = {
            "kl": float((kl * mask).sum() / n),
            "clip_frac": float((low + high).sum() / n),
            "clip_frac_low": float(low.sum() / n),
            "clip_frac_high": float(high.sum() / n),
            "ratio_mean": float((ratio * mask).sum() / n),
            "ratio_max": float(torch.where(mask > 0, ratio, -big).max()) if mask.any() else 1.0,
            "ratio_min": float(torch.where(mask > 0, ratio, big).min()) if mask.any() else 1.0,
            "tokens": float(mask.sum()),
        }
        if tis is not None:
            metrics["tis_weight_mean"] = float((tis * mask).sum() / n)
    return loss, metrics
