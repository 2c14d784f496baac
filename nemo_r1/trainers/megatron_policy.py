"""`Policy` on a Megatron GPTModel: TP x PP x DP, pipeline schedule, DDP, megatron optimizer.

Loss scaling: our losses are already normalised by global counts (tokens or sequences over all
micro-batches and DP ranks), so the gradient we want is the plain *sum* over micro-batches and
ranks. Megatron's schedule divides each micro-batch loss by the number of micro-batches and DDP
averages over DP ranks; we multiply by both factors to undo that, rather than fork the schedule.
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
    """One model replica's shard on this rank, its optimizer and LR schedule."""

    def __init__(self, model: Any, optimizer: Any, scheduler: Any, hf_dir: str, cfg: Config) -> None:
        from megatron.core import parallel_state as ps
        from megatron.core.distributed import finalize_model_grads

        self.model, self.optimizer, self.scheduler, self.hf_dir, self.cfg = model, optimizer, scheduler, hf_dir, cfg
        self.ps = ps
        mcfg = model.config
        # Losses are globally normalised (calculate_per_token_loss=True in the model config): keep the
        # DP all-reduce and tied-embedding sync of finalize, but not its division by the token count.
        mcfg.finalize_model_grads_func = lambda models, num_tokens=None, **kw: finalize_model_grads(models, None, **kw)
        mcfg.no_sync_func = model.no_sync
        mcfg.variable_seq_lengths = True  # micro-batches are trimmed to their own longest sequence
        # logprobs of the distribution the engine sampled from (temperature-scaled logits)
        self.temperature = cfg.rollout.temperature if cfg.rollout.temperature > 0 else 1.0

    # ------------------------------------------------------------------ forward / backward

    def logprobs(self, batch: TrainBatch, micro_batch_size: int) -> Tensor | None:
        from nemo_r1.models.forward import forward_backward_logprobs
        from nemo_r1.trainers.batching import micro_batches

        groups = micro_batches(batch.lengths, micro_batch_size, bucket_by_length=False)
        micro = [batch.select(ix).trim() for ix in groups]
        self.model.eval()
        with torch.no_grad():
            out = forward_backward_logprobs(self.model, micro, None, forward_only=True,
                                            temperature=self.temperature, broadcast=False)
        self.model.train()
        if not self.ps.is_pipeline_last_stage():
            return None
        full = torch.zeros(batch.tokens.shape[0], batch.tokens.shape[1] - 1)
        for ix, lp in zip(groups, out.logprobs, strict=True):
            full[ix, : lp.shape[1]] = lp
        return full

    def train_step(self, micro_batches: list[TrainBatch], loss_fn: LossFn) -> dict[str, float]:
        from nemo_r1.models.forward import forward_backward_logprobs

        def with_diff(lp: Tensor, mb: TrainBatch):  # noqa: ANN202
            loss, metrics = loss_fn(lp, mb)
            metrics["logprob_abs_diff_sum"] = float(((lp.detach() - mb.rollout_logprobs).abs() * mb.mask).sum())
            return loss, metrics

        self.model.train()
        self.model.zero_grad_buffer()
        self.optimizer.zero_grad()
        out = forward_backward_logprobs(self.model, micro_batches, with_diff, forward_only=False,
                                        temperature=self.temperature, broadcast=True)
        ok, grad_norm, _ = self.optimizer.step()
        self.scheduler.step(increment=1)
        stats = _reduce(out.losses, out.metrics)
        stats["grad_norm"] = float(grad_norm) if grad_norm is not None else float("nan")
        stats["lr"] = float(self.optimizer.param_groups[0]["lr"])
        if not ok:
            stats["skipped_step"] = 1.0
        return stats

    # ------------------------------------------------------------------ weights and checkpoints

    def hf_weights(self) -> Iterable[tuple[str, Tensor]]:
        from nemo_r1.models import iter_hf_weights

        return iter_hf_weights(self.model, self.hf_dir)

    def save(self, path: Path, extra: dict[str, Any]) -> None:
        from nemo_r1.models import save_checkpoint

        save_checkpoint(path, self.model, self.optimizer, self.scheduler, extra)

    def load(self, path: Path) -> dict[str, Any]:
        from nemo_r1.models import load_checkpoint

        return load_checkpoint(path, self.model, self.optimizer, self.scheduler)


def _reduce(losses: list[float], metrics: list[dict[str, float]]) -> dict[str, float]:
    """Loss: the sum over micro-batches (it is globally normalised); other metrics: token-weighted means."""
    tokens = sum(m.get("tokens", 0.0) for m in metrics) or 1.0
    out = {"loss": float(sum(losses)), "tokens": tokens}
    for k in ("kl", "clip_frac", "clip_frac_low", "clip_frac_high", "ratio_mean", "tis_weight_mean"):
        if any(k in m for m in metrics):
            out[k] = sum(m.get(k, 0.0) * m.get("tokens", 0.0) for m in metrics) / tokens
    out["logprob_diff"] = sum(m.get("logprob_abs_diff_sum", 0.0) for m in metrics) / tokens
    return out


def build_optimizer(model: Any, cfg: Config) -> tuple[Any, Any, Any]:
    """Megatron DDP (distributed optimizer when DP > 1), Adam, and the warmup + decay LR schedule."""
    from megatron.core import parallel_state as ps
    from megatron.core.distributed import DistributedDataParallel, DistributedDataParallelConfig
    from megatron.core.optimizer import OptimizerConfig, get_megatron_optimizer
    from megatron.core.optimizer_param_scheduler import OptimizerParamScheduler

    dist_opt = ps.get_data_parallel_world_size() > 1
    ddp = DistributedDataParallel(model.config, DistributedDataParallelConfig(
        grad_reduce_in_fp32=True, use_distributed_optimizer=dist_opt, overlap_grad_reduce=False), model)
    o = cfg.optim
    opt = get_megatron_optimizer(OptimizerConfig(
        optimizer="adam", lr=o.lr, min_lr=o.min_lr, weight_decay=o.weight_decay, adam_beta1=o.adam_beta1,
        adam_beta2=o.adam_beta2, adam_eps=o.adam_eps, clip_grad=cfg.train.grad_clip,
        use_distributed_optimizer=dist_opt, params_dtype=model.config.params_dtype,
        bf16=model.config.params_dtype == torch.bfloat16), [ddp])
    steps = max(cfg.train.max_steps, 1)
    sched = OptimizerParamScheduler(
        opt, init_lr=0.0 if o.warmup_steps else o.lr, max_lr=o.lr, min_lr=o.min_lr,
        lr_warmup_steps=o.warmup_steps, lr_decay_steps=max(steps, o.warmup_steps + 1),
        lr_decay_style=o.scheduler, start_wd=o.weight_decay, end_wd=o.weight_decay,
        wd_incr_steps=steps, wd_incr_style="constant")
    return ddp, opt, sched


def build_policy(cfg: Config, hf_dir: str) -> MegatronPolicy:
    """Init ranks (if needed), build the sharded model from the HF checkpoint, wrap it for training."""
    from nemo_r1.distributed import init_distributed
    from nemo_r1.models.build import build_model
    from nemo_r1.models.config import model_info, read_hf_config
    from nemo_r1.models.hf_import import load_hf_weights

    init_distributed(cfg.parallel.tensor, cfg.parallel.pipeline, seed=cfg.train.seed)
    model = build_model(model_info(read_hf_config(hf_dir), tp=cfg.parallel.tensor), dtype=cfg.model.dtype)
    load_hf_weights(model, hf_dir)
    model, optimizer, scheduler = build_optimizer(model, cfg)
    return MegatronPolicy(model, optimizer, scheduler, hf_dir, cfg)
