"""`Policy` on a Megatron GPTModel: TP x PP x DP, pipeline schedule, DDP, megatron optimizer.

The GRPO losses are normalised by global counts (tokens or sequences over all micro-batches and
DP ranks); `nemo_r1.models.train` sums gradients over micro-batches and ranks accordingly.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

from nemo_r1.config import Config
from nemo_r1.trainers.batching import TrainBatch
from nemo_r1.trainers.policy import LossFn


def replica_info() -> tuple[int, int, Any, Any, bool]:
    """(dp rank, dp size, this replica's model-parallel group, this rank's DP group, is global rank 0)."""
    if not dist.is_initialized():
        return 0, 1, None, None, True
    from megatron.core import parallel_state as ps

    mp = ps.get_model_parallel_group() if ps.get_data_parallel_world_size() > 1 or dist.get_world_size() > 1 else None
    return (ps.get_data_parallel_rank(), ps.get_data_parallel_world_size(), mp, ps.get_data_parallel_group(),
            dist.get_rank() == 0)


class MegatronPolicy:
    """One model replica's shard on this rank with its optimizer and LR schedule (a models.train.TrainState)."""

    def __init__(self, state: Any, hf_dir: str, cfg: Config, ref_model: torch.nn.Module | None = None) -> None:
        from megatron.core import parallel_state as ps

        self.state, self.model, self.hf_dir, self.cfg, self.ps = state, state.model, hf_dir, cfg, ps
        self.ref_model = ref_model
        # logprobs of the distribution the engine sampled from (temperature-scaled logits)
        self.temperature = cfg.rollout.temperature if cfg.rollout.temperature > 0 else 1.0
        self.bucket_bytes = cfg.rollout.refit_bucket_mb << 20

    # ------------------------------------------------------------------ forward / backward

    def logprobs(self, batch: TrainBatch, micro_batch_size: int) -> Tensor | None:
        return self._logprobs(self.model, batch, micro_batch_size)

    def ref_logprobs(self, batch: TrainBatch, micro_batch_size: int) -> Tensor | None:
        if self.ref_model is None:
            raise RuntimeError("no reference model: it is built only when grpo.beta > 0")
        return self._logprobs(self.ref_model, batch, micro_batch_size)

    def _logprobs(self, model: torch.nn.Module, batch: TrainBatch, micro_batch_size: int) -> Tensor | None:
        from nemo_r1.models.forward import forward_backward_logprobs
        from nemo_r1.trainers.batching import micro_batches

        groups = micro_batches(batch.lengths, micro_batch_size, bucket_by_length=False)
        micro = [batch.select(ix).trim() for ix in groups]
        was_training = model.training
        model.eval()
        with torch.no_grad():
            out = forward_backward_logprobs(model, micro, None, forward_only=True,
                                            temperature=self.temperature, broadcast=False)
        model.train(was_training)
        if not self.ps.is_pipeline_last_stage():
            return None
        full = torch.zeros(batch.tokens.shape[0], batch.tokens.shape[1] - 1)
        for ix, lp in zip(groups, out.logprobs, strict=True):
            full[ix, : lp.shape[1]] = lp
        return full

    def train_step(self, micro_batches: list[TrainBatch], loss_fn: LossFn) -> dict[str, float]:
        from nemo_r1.models.train import train_step

        def with_diff(lp: Tensor, mb: TrainBatch):  # noqa: ANN202
            loss, metrics = loss_fn(lp, mb)
            metrics["logprob_abs_diff_sum"] = float(((lp.detach() - mb.rollout_logprobs).abs() * mb.mask).sum())
            return loss, metrics

        self.model.train()
        out, stats = train_step(self.state, micro_batches, with_diff, temperature=self.temperature)
        return {**_reduce(out.losses, out.metrics), "grad_norm": stats["grad_norm"], "lr": stats["lr"],
                "skipped_step": stats["skipped"]}

    # ------------------------------------------------------------------ weights and checkpoints

    def hf_weights(self) -> Iterable[tuple[str, Tensor]]:
        from nemo_r1.models.hf_export import iter_hf_weights

        return iter_hf_weights(self.model, bucket_bytes=self.bucket_bytes)

    def save(self, path: Path, extra: dict[str, Any]) -> None:
        from nemo_r1.models.checkpoint import save_checkpoint

        save_checkpoint(path, self.model, self.state.optimizer, self.state.scheduler, extra, hf_dir=self.hf_dir)

    def load(self, path: Path) -> dict[str, Any]:
        from nemo_r1.models.checkpoint import load_checkpoint

        return load_checkpoint(path, self.model, self.state.optimizer, self.state.scheduler)


def _reduce(losses: list[float], metrics: list[dict[str, float]]) -> dict[str, float]:
    """Loss: the sum over micro-batches (it is globally normalised); other metrics: token-weighted means."""
    tokens = sum(m.get("tokens", 0.0) for m in metrics) or 1.0
    out = {"loss": float(sum(losses)), "tokens": tokens}
    for k in ("kl", "clip_frac", "clip_frac_low", "clip_frac_high", "ratio_mean", "tis_weight_mean"):
        if any(k in m for m in metrics):
            out[k] = sum(m.get(k, 0.0) * m.get("tokens", 0.0) for m in metrics) / tokens
    out["logprob_diff"] = sum(m.get("logprob_abs_diff_sum", 0.0) for m in metrics) / tokens
    return out


def build_policy(cfg: Config, hf_dir: str) -> MegatronPolicy:
    """Init ranks (if needed), build the sharded model from the HF checkpoint, wrap it for training."""
    from nemo_r1.distributed import init_distributed
    from nemo_r1.models.build import build_model
    from nemo_r1.models.config import (
        model_info,
        read_hf_config,
        recompute_overrides,
        sequence_parallel_overrides,
    )
    from nemo_r1.models.hf_import import load_hf_weights
    from nemo_r1.models.train import setup_training
    from nemo_r1.platform import cuda_available
    from nemo_r1.trainers.lifecycle import optim_settings

    init_distributed(cfg.parallel.tensor, cfg.parallel.pipeline, seed=cfg.train.seed)
    info = model_info(read_hf_config(hf_dir), tp=cfg.parallel.tensor)

    def from_hf() -> torch.nn.Module:
        m = build_model(info, dtype=cfg.model.dtype, **recompute_overrides(cfg.model.recompute),
                        **sequence_parallel_overrides(cfg.parallel.sequence_parallel, cfg.parallel.tensor,
                                                      cuda_available()))
        load_hf_weights(m, hf_dir)
        return m

    steps = cfg.train.max_steps
    state = setup_training(from_hf(), optim_settings(cfg.optim, steps), total_steps=steps, clip_grad=cfg.train.grad_clip)
    ref = None
    if cfg.grpo.beta > 0:  # the KL anchor: the initial weights, frozen (not checkpointed: rebuilt from hf_dir)
        ref = from_hf()
        ref.requires_grad_(False)
        ref.eval()
    return MegatronPolicy(state, hf_dir, cfg, ref)
