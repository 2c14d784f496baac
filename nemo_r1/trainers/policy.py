"""The narrow interface between the GRPO/SFT loops and the trained model.

The loops never touch Megatron directly: they hand micro-batches and a loss function to a
`Policy` and get metrics back, and they read weights out of it as HF-named tensors for the
rollout engine. Parallelism (TP/PP/DP, the pipeline schedule, grad reduction) stays behind it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Protocol

from torch import Tensor

from nemo_r1.trainers.batching import TrainBatch

# loss_fn(logprobs [b, l-1] of the micro-batch's tokens, the micro-batch) -> (scalar loss, metrics).
# The loss must already be normalised by *global* counts (see algorithms.grpo.policy_loss), so the
# policy sums gradients over micro-batches and data-parallel ranks without further scaling.
LossFn = Callable[[Tensor, TrainBatch], tuple[Tensor, dict[str, float]]]


class Policy(Protocol):
    """A trainable causal LM, possibly sharded over TP x PP x DP ranks (all ranks call each method)."""

    def logprobs(self, batch: TrainBatch, micro_batch_size: int) -> Tensor | None:
        """Forward only: [B, L-1] logprobs of batch.tokens[:, 1:]; None on ranks without the last stage."""
        ...

    def ref_logprobs(self, batch: TrainBatch, micro_batch_size: int) -> Tensor | None:
        """As `logprobs`, from the frozen reference model (the initial weights; built only when beta > 0)."""
        ...

    def train_step(self, micro_batches: list[TrainBatch], loss_fn: LossFn) -> dict[str, float]:
        """Forward+backward every micro-batch, then one optimizer step. Returns, on every rank, the summed
        loss, the micro-batch-averaged loss metrics, `grad_norm`, `lr`, and `logprobs` side outputs."""
        ...

    def hf_weights(self) -> Iterable[tuple[str, Tensor]]:
        """All weights as full HF-named tensors (a collective: every rank must iterate it)."""
        ...

    def save(self, path: Path, extra: dict[str, Any]) -> None:
        """Model + optimizer + scheduler + RNG + `extra`, atomically."""
        ...

    def load(self, path: Path) -> dict[str, Any]:
        """Restore what `save` wrote; returns `extra`."""
        ...
