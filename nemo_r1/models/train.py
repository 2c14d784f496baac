"""Training wrappers the trainers call: DDP + megatron (distributed) optimizer + LR schedule, and
one optimizer step over micro-batches.

`setup_training` wraps a built GPTModel in megatron's DistributedDataParallel, builds the
optimizer with `get_megatron_optimizer` (Adam; the distributed optimizer shards its state over
DP ranks) and megatron's OptimizerParamScheduler (linear warmup, then cosine/linear/constant).
`train_step` zeroes grads, runs `forward_backward_logprobs`, steps the schedule and optimizer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from nemo_r1.models.forward import LossFn, StepOutput, forward_backward_logprobs
from nemo_r1.platform import cuda_available, patches_applied


@dataclass(frozen=True)
class OptimSettings:
    """Adam and its LR schedule as plain values; a trainer fills them from its run config (whose
    `optim` section also resolves warmup ratios into `warmup_steps`)."""

    lr: float
    """Peak learning rate (after warmup)."""
    min_lr: float = 0.0
    """Floor of the cosine/linear decay."""
    weight_decay: float = 0.0
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_eps: float = 1e-8
    warmup_steps: int = 0
    """Linear warmup from 0: step k (1-based) uses lr * k / warmup_steps."""
    scheduler: str = "constant"
    """`constant` | `cosine` | `linear` (megatron's decay style after warmup)."""
    decay_steps: int | None = None
    """Steps until min_lr; None = the run's total steps."""
    distributed_optimizer: bool = True
    """Shard Adam state (and the fp32 master weights) over data-parallel ranks."""


@dataclass
class TrainState:
    """The trainable model and what steps it."""

    model: torch.nn.Module  # megatron DDP wrapping the GPTModel
    optimizer: Any
    scheduler: Any


def _finalize_grads_as_sums(model: list[torch.nn.Module], num_tokens: Any = None, **kw: Any) -> None:
    """megatron's grad finalisation (DP reduce, tied-embedding all-reduce across PP) without its
    per-token rescale: our losses are normalised by global counts already."""
    from megatron.core.distributed import finalize_model_grads

    finalize_model_grads(model, num_tokens=None, **kw)


def _fuse_wgrad_accumulation(model: torch.nn.Module) -> None:
    """CPU: accumulate weight gradients straight into DDP's main_grad (platform's addmm_ shim), as
    megatron does on GPU; only for models wrapped in DDP, which gives every weight a main_grad."""
    from megatron.core.tensor_parallel import layers

    for mod in model.modules():
        if isinstance(mod, layers.ColumnParallelLinear | layers.RowParallelLinear):
            mod.gradient_accumulation_fusion = True


def torch_optimizers(optimizer: Any) -> list[torch.optim.Optimizer]:
    """The torch optimizers inside megatron's wrappers (chained, distributed, fp32/fp16)."""
    if isinstance(optimizer, torch.optim.Optimizer):
        return [optimizer]
    if hasattr(optimizer, "chained_optimizers"):
        return [o for c in optimizer.chained_optimizers for o in torch_optimizers(c)]
    return torch_optimizers(optimizer.optimizer) if hasattr(optimizer, "optimizer") else []


def use_fused_cpu_adam(optimizer: Any) -> None:
    """CPU: run torch's fused Adam kernel (one pass per tensor) instead of the per-op loop.

    Without TE or apex, megatron falls back to torch.optim.AdamW with the CPU default
    (foreach/fused off): ~10 elementwise ops over each tensor with temporaries, 0.5 s per step for
    135M params on 2 cores vs 0.1 s fused. Set per param group, so it is re-applied after a
    checkpoint load (which restores the saved groups' flags).
    """
    if cuda_available():
        return
    for opt in torch_optimizers(optimizer):
        if not isinstance(opt, torch.optim.Adam | torch.optim.AdamW):
            continue
        for group in opt.param_groups:
            if not group.get("differentiable") and not group.get("capturable"):
                group["foreach"], group["fused"] = False, True


def init_unstepped_state(optimizer: Any) -> None:
    """Give every param of an optimizer that never stepped the state its first step would create.

    Megatron's distributed optimizer cannot save a checkpoint without per-param Adam state
    (KeyError 'exp_avg'), which a run meets when it saves before any step trained (e.g. GRPO whose
    first steps had no informative group). torch's Adam/AdamW: step 0 and zero moments, exactly
    what `_init_group` creates, so the next step is the same as from an empty state. Others get
    megatron's own `init_state_fn` (what its checkpoint loading does)."""
    for opt in torch_optimizers(optimizer):
        if not isinstance(opt, torch.optim.Adam | torch.optim.AdamW):
            continue
        for group in opt.param_groups:
            for p in group["params"]:
                st = opt.state[p]
                if len(st) == 0:
                    on_device = group.get("fused") or group.get("capturable")
                    st["step"] = torch.zeros((), dtype=torch.float32, device=p.device if on_device else None)
                    st["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    st["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    if group.get("amsgrad"):
                        st["max_exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
    for inner in getattr(optimizer, "chained_optimizers", [optimizer]):
        fn, opt = getattr(inner, "init_state_fn", None), getattr(inner, "optimizer", None)
        if fn is not None and opt is not None and not any(len(s) for s in opt.state.values()):
            fn(opt, getattr(inner, "config", None))


def _no_grad_sync(force_all_reduce: bool = False) -> None:
    return None


def _no_param_sync(*unused: Any, force_sync: bool = False, force_dispatch: bool = False) -> None:
    return None


def setup_training(model: torch.nn.Module, cfg: OptimSettings, total_steps: int, clip_grad: float = 1.0) -> TrainState:
    """Wrap `model` (from build_model) for training; call once per run, on every rank.

    clip_grad: global grad-norm clip, 0 disables (the config's `train.grad_clip`)."""
    from megatron.core.distributed import DistributedDataParallel, DistributedDataParallelConfig
    from megatron.core.optimizer import OptimizerConfig, get_megatron_optimizer
    from megatron.core.optimizer_param_scheduler import OptimizerParamScheduler

    tcfg = model.config
    gpu = cuda_available()
    ddp_cfg = DistributedDataParallelConfig(grad_reduce_in_fp32=True, use_distributed_optimizer=cfg.distributed_optimizer,
                                            overlap_grad_reduce=gpu, overlap_param_gather=False)
    ddp = DistributedDataParallel(tcfg, ddp_cfg, model)
    ocfg = OptimizerConfig(optimizer="adam", lr=cfg.lr, min_lr=cfg.min_lr, weight_decay=cfg.weight_decay,
                           adam_beta1=cfg.adam_beta1, adam_beta2=cfg.adam_beta2, adam_eps=cfg.adam_eps,
                           clip_grad=clip_grad, bf16=tcfg.bf16, fp16=tcfg.fp16, params_dtype=tcfg.params_dtype,
                           use_distributed_optimizer=cfg.distributed_optimizer)
    optimizer = get_megatron_optimizer(ocfg, [ddp])
    use_fused_cpu_adam(optimizer)
    warmup = cfg.warmup_steps
    decay = max(cfg.decay_steps or total_steps, warmup + 1)
    scheduler = OptimizerParamScheduler(
        optimizer, init_lr=0.0, max_lr=cfg.lr, min_lr=cfg.min_lr, lr_warmup_steps=warmup,
        lr_decay_steps=decay, lr_decay_style=cfg.scheduler, start_wd=cfg.weight_decay, end_wd=cfg.weight_decay,
        wd_incr_steps=decay, wd_incr_style="constant")
    from megatron.core import parallel_state as ps

    if patches_applied():
        _fuse_wgrad_accumulation(model)
    if ps.get_data_parallel_world_size(with_context_parallel=True) == 1 and not ddp_cfg.overlap_grad_reduce:
        # A reduce over one rank is the identity, but gloo still copies the whole grad buffer (twice
        # per step for a reduce-scatter); the buffers already hold the summed gradients. Likewise the
        # distributed optimizer's param all-gather: the updated shard is already the whole param
        # buffer, and gloo's gather allocated (and page-faulted) a model-sized temporary each step.
        ddp.finish_grad_sync = _no_grad_sync
        ddp.start_param_sync = _no_param_sync
    tcfg.no_sync_func = ddp.no_sync
    tcfg.finalize_model_grads_func = _finalize_grads_as_sums
    tcfg.grad_scale_func = optimizer.scale_loss if tcfg.fp16 else None
    return TrainState(ddp, optimizer, scheduler)


def train_step(state: TrainState, micro_batches: Sequence[Any], loss_fn: LossFn,
               temperature: float = 1.0) -> tuple[StepOutput, dict[str, float]]:
    """One optimizer step over `micro_batches` (this DP rank's share of the global batch).

    Returns the forward output (logprobs/losses/metrics, broadcast to every PP stage) and
    {"loss": summed loss over this rank's micro-batches, "grad_norm", "lr", "skipped"}.
    The LR schedule advances before the update, so step k (1-based) uses lr(k).
    """
    state.model.zero_grad_buffer()
    state.optimizer.zero_grad()
    out = forward_backward_logprobs(state.model, micro_batches, loss_fn, forward_only=False, temperature=temperature)
    state.scheduler.step(increment=1)
    ok, grad_norm, _ = state.optimizer.step()
    lr = state.optimizer.param_groups[0]["lr"]
    return out, {"loss": out.loss, "grad_norm": float(grad_norm or 0.0), "lr": float(lr), "skipped": float(not ok)}
