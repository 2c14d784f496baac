"""GRPO loss variants: how one batch's masked per-token losses become a scalar.

The variants share the clipped surrogate (`grpo.policy_loss`) and differ only in the normaliser.
This table is the one list of them: `policy_loss` aggregates with it, the config's
`grpo.loss_type` choices and the trainer's zero-advantage skip read it, so a new variant is one
entry here. Importing it needs no torch (the config reads it).

Each `aggregate(masked, mask, counts)` takes the masked per-token losses and the mask [B, T] of
this micro-batch; `counts` carries the global normalisers (summed over micro-batches and DP ranks),
each None when the caller wants this micro-batch's own count.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import Tensor


@dataclass(frozen=True)
class Counts:
    """Normalisers of the whole batch; None = this micro-batch's own."""

    num_tokens: float | None = None
    num_sequences: float | None = None
    max_completion_length: int | None = None
    num_micro_batches: float | None = None
    """Micro-batches of the step over all DP ranks (accumulation steps x ranks); None = 1."""


@dataclass(frozen=True)
class LossVariant:
    aggregate: Callable[[Tensor, Tensor, Counts], Tensor]
    """`(masked per-token loss [B, T], mask [B, T], counts) -> scalar loss`."""
    global_counts: bool
    """Normalised by whole-batch counts only (given by the caller), never by this micro-batch's own:
    then a sample that adds 0 to the sum can be left out without rescaling the others."""
    doc: str


def _grpo(masked: Tensor, mask: Tensor, c: Counts) -> Tensor:
    seq_means = masked.sum(dim=1) / mask.sum(dim=1).clamp(min=1)
    return seq_means.sum() / (c.num_sequences if c.num_sequences is not None else masked.shape[0])


def _bnpo(masked: Tensor, mask: Tensor, c: Counts) -> Tensor:
    # TRL's definition: the token mean of each local batch, averaged over accumulation steps and
    # ranks; the trainer sums micro-batch gradients, so each mean is divided by their number
    return masked.sum() / mask.sum().clamp(min=1) / (c.num_micro_batches or 1)


def _dr_grpo(masked: Tensor, mask: Tensor, c: Counts) -> Tensor:
    if c.max_completion_length is None:
        raise ValueError("loss_type='dr_grpo' needs max_completion_length")
    n_seq = c.num_sequences if c.num_sequences is not None else masked.shape[0]
    return masked.sum() / (n_seq * c.max_completion_length)


def _dapo(masked: Tensor, mask: Tensor, c: Counts) -> Tensor:
    return masked.sum() / (c.num_tokens if c.num_tokens is not None else mask.sum().clamp(min=1))


# name -> variant; the order is the order error messages list them in
LOSS_VARIANTS: dict[str, LossVariant] = {
    "grpo": LossVariant(_grpo, global_counts=True,
                        doc="mean over each sequence's tokens, then over sequences (num_sequences)"),
    "bnpo": LossVariant(_bnpo, global_counts=False,
                        doc="token mean of each micro-batch, averaged over micro-batches and DP ranks (TRL)"),
    "dr_grpo": LossVariant(_dr_grpo, global_counts=True,
                           doc="token sum / (num_sequences x max_completion_length): no length bias"),
    "dapo": LossVariant(_dapo, global_counts=True,
                        doc="token sum / loss tokens of the whole batch (num_tokens)"),
}


def get_loss_variant(name: str) -> LossVariant:
    if name not in LOSS_VARIANTS:
        raise ValueError(f"loss_type={name!r} is not one of {tuple(LOSS_VARIANTS)}")
    return LOSS_VARIANTS[name]
