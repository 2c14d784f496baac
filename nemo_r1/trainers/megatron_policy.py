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
        mcfg.finalize_model_grads_func = finalize_model_grads
        mcfg.no_sync_func = model.no_sync
        mcfg.variable_seq_lengths = True  # micro-batches are trimmed to their own longest sequence
        self.dp = ps.get_data_parallel_world_size()

    # ------------------------------------------------------------------ forward / backward

    def _run(self, micro: list[TrainBatch], loss_fn: LossFn | None, forward_only: bool) -> list[dict[str, Any]]:
        from megatron.core.pipeline_parallel import get_forward_backward_func

        n_micro = len(micro)
        it = iter(micro)

        def forward_step(data_iterator, model):  # noqa: ANN001, ANN202 - megatron's callback shape
            mb = next(data_iterator)
            inp = mb.tokens[:, :-1].contiguous()
            labels = mb.tokens[:, 1:].contiguous()
            pos = torch.arange(inp.shape[1]).unsqueeze(0).expand_as(inp)
            out = model(inp, pos, None, labels=labels)  # per-token vocab-parallel CE = -logprob

            def loss_func(per_token_ce: Tensor):  # noqa: ANN202
                logprobs = -per_token_ce.float()
                if loss_fn is None:
                    return per_token_ce.sum() * 0.0, {"logprobs": logprobs.detach()}
                loss, metrics = loss_fn(logprobs, mb)
                scaled = loss * n_micro * self.dp  # undo the schedule's /n_micro and DDP's /dp
                diff = ((logprobs.detach() - mb.rollout_logprobs).abs() * mb.mask).sum()
                return scaled, {"loss": loss.detach(), "logprob_abs_diff_sum": diff,
                                **{k: torch.tensor(float(v)) for k, v in metrics.items()}}

            return out, loss_func

        return get_forward_backward_func()(
            forward_step_func=forward_step, data_iterator=it, model=[self.model], num_microbatches=n_micro,
            seq_length=int(micro[0].tokens.shape[1] - 1), micro_batch_size=int(micro[0].tokens.shape[0]),
            forward_only=forward_only)

    def logprobs(self, batch: TrainBatch, micro_batch_size: int) -> Tensor | None:
        from nemo_r1.trainers.batching import micro_batches

        groups = micro_batches(batch.lengths, micro_batch_size, bucket_by_length=False)
        micro = [batch.select(ix).trim() for ix in groups]
        self.model.eval()
        with torch.no_grad():
            outs = self._run(micro, None, forward_only=True)
        self.model.train()
        if not self.ps.is_pipeline_last_stage():
            return None
        full = torch.zeros(batch.tokens.shape[0], batch.tokens.shape[1] - 1)
        for ix, o in zip(groups, outs, strict=True):
            lp = o["logprobs"]
            full[ix, : lp.shape[1]] = lp
        return full

    def train_step(self, micro_batches: list[TrainBatch], loss_fn: LossFn) -> dict[str, float]:
        self.model.train()
        self.model.zero_grad_buffer()
        self.optimizer.zero_grad()
        outs = self._run(micro_batches, loss_fn, forward_only=False)
        ok, grad_norm, _ = self.optimizer.step()
        self.scheduler.step(increment=1)
        stats = self._reduce_metrics(outs)
        stats["grad_norm"] = float(grad_norm) if grad_norm is not None else float("nan")
        stats["lr"] = float(self.optimizer.param_groups[0]["lr"])
        if not ok:
            stats["skipped_step"] = 1.0
        return stats

    def _reduce_metrics(self, outs: list[dict[str, Any]]) -> dict[str, float]:
        """Sum the loss, average the rest over micro-batches, from the last stage to every rank."""
        keys = ["loss", "logprob_abs_diff_sum", "tokens", "kl", "clip_frac", "clip_frac_low", "clip_frac_high",
                "ratio_mean"]
        vals = torch.zeros(len(keys) + 1, dtype=torch.float64)
        if self.ps.is_pipeline_last_stage() and outs:
            for o in outs:
                tok = float(o.get("tokens", 1.0))
                for i, k in enumerate(keys):
                    if k in ("loss", "logprob_abs_diff_sum", "tokens"):
                        vals[i] += float(o.get(k, 0.0))
                    else:  # token-weighted mean over micro-batches
                        vals[i] += float(o.get(k, 0.0)) * tok
            vals[-1] = 1.0
        if dist.is_initialized() and self.ps.get_pipeline_model_parallel_world_size() > 1:
            dist.all_reduce(vals, group=self.ps.get_pipeline_model_parallel_group())
        tokens = max(float(vals[keys.index("tokens")]), 1.0)
        out = {"loss": float(vals[0])}
        for i, k in enumerate(keys[3:], start=3):
            out[k] = float(vals[i]) / tokens
        out["logprob_diff"] = float(vals[1]) / tokens
        return out

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


def build_policy(cfg: Config, hf_dir: str) -> MegatronPolicy:
    """Init ranks (if needed), build the sharded model from the HF checkpoint, wrap it for training."""
    from nemo_r1.distributed import init_distributed
    from nemo_r1.models import build_optimizer, load_hf_model

    init_distributed(cfg.parallel.tensor, cfg.parallel.pipeline, seed=cfg.train.seed)
    model = load_hf_model(hf_dir, dtype=cfg.model.dtype)
    model, optimizer, scheduler = build_optimizer(model, cfg)
    return MegatronPolicy(model, optimizer, scheduler, hf_dir, cfg)
