"""Rank functions for the SFT precision/memory option tests (activation recompute, bf16 with fp32
main params, distributed optimizer); a uniquely named module: spawned ranks import it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from sft_ranks import sft_overrides

RECOMPUTE = ("none", "selective", "full")


def _cfg(hf_dir: str, data_dir: str, out: Path, *extra: str) -> Any:
    from nemo_r1.config import load_config

    return load_config(None, sft_overrides(Path(hf_dir), Path(data_dir) / "messages.jsonl", "messages", out,
                                           "train.max_seq_len=96", *extra))


def _count_calls(module: torch.nn.Module, counts: dict[str, int], key: str) -> None:
    def hook(*_: Any) -> None:
        counts[key] += 1

    module.register_forward_hook(hook)


def recompute_runs(hf_dir: str, data_dir: str, out_root: str) -> dict[str, dict[str, Any]]:
    """Per `model.recompute` mode, on one rank: the built TransformerConfig's recompute fields, the
    loss and every gradient of one forward/backward of batch 0, how often the first layer's MLP and
    core attention ran in it, then the losses and grad norms of 2 SFT steps at lr 1e-2."""
    from nemo_r1.distributed import init_distributed
    from nemo_r1.models.build import unwrap
    from nemo_r1.models.forward import forward_backward_logprobs
    from nemo_r1.trainers.sft import build_training, loss_fn_for, run_sft
    from nemo_r1.trainers.sft_data import build_sft_data, load_documents

    init_distributed(1, 1, seed=0)
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(hf_dir)
    out: dict[str, dict[str, Any]] = {}
    for mode in RECOMPUTE:
        cfg = _cfg(hf_dir, data_dir, Path(out_root) / mode, f"model.recompute={mode}", "train.max_steps=2",
                   "optim.lr=1e-2")
        state = build_training(cfg, hf_dir, 2)
        gpt = unwrap(state.model)
        layer = gpt.decoder.layers[0]
        counts = {"mlp": 0, "core_attention": 0}
        _count_calls(layer.mlp, counts, "mlp")
        _count_calls(layer.self_attention.core_attention, counts, "core_attention")
        data = build_sft_data(cfg, load_documents(cfg, tok), tok.pad_token_id or 0)
        bins = data.global_bins(0)
        mbs = data.micro_batches(bins, 0, 1, cfg.train.micro_batch_size)
        state.model.train()
        state.model.zero_grad_buffer()
        res = forward_backward_logprobs(state.model, mbs, loss_fn_for(float(data.loss_tokens(bins))))
        grads = [p.main_grad.detach().clone() for p in state.model.parameters()]
        calls = dict(counts, micro_batches=len(mbs))
        rows = run_sft(cfg, state)
        tc = gpt.config
        out[mode] = {"granularity": tc.recompute_granularity, "method": tc.recompute_method, "calls": calls,
                     "loss": float(res.loss), "grads": grads,
                     "losses": [r["train/loss"] for r in rows], "grad_norms": [r["train/grad_norm"] for r in rows]}
    return out


def _optimizer_view(optimizer: Any) -> dict[str, Any]:
    """Megatron's optimizer class(es) and the dtypes of what Adam updates (its main params)."""
    from nemo_r1.models.train import torch_optimizers

    inner = getattr(optimizer, "chained_optimizers", [optimizer])
    view: dict[str, Any] = {"classes": [type(o).__name__ for o in inner], "main_dtypes": set(), "fp32_from_16": 0}
    for opt in inner:
        # Float16OptimizerWithFloat16Params: fp32 copies of the bf16 params; DistributedOptimizer:
        # fp32 copies of this rank's shard of them
        for name in ("fp32_from_float16_groups", "shard_fp32_from_float16_groups"):
            for group in getattr(opt, name, []):
                view["fp32_from_16"] += len(group)
                view["main_dtypes"] |= {str(p.dtype) for p in group}
    for opt in torch_optimizers(optimizer):
        view["main_dtypes"] |= {str(p.dtype) for g in opt.param_groups for p in g["params"]}
    return view


def bf16_runs(hf_dir: str, data_dir: str, out_root: str) -> dict[str, dict[str, Any]]:
    """4 SFT steps at lr 3e-3 in float32, and in bfloat16 with the distributed optimizer on and off:
    losses, the model's parameter dtypes and the optimizer's main-param dtypes."""
    from nemo_r1.distributed import init_distributed
    from nemo_r1.models.build import unwrap
    from nemo_r1.trainers.sft import build_training, run_sft

    init_distributed(1, 1, seed=0)
    out: dict[str, dict[str, Any]] = {}
    for name, dtype, distributed in (("fp32", "float32", True), ("bf16", "bfloat16", True),
                                     ("bf16_nondist", "bfloat16", False)):
        cfg = _cfg(hf_dir, data_dir, Path(out_root) / name, f"model.dtype={dtype}", "train.max_steps=4",
                   "optim.lr=3e-3", f"optim.distributed_optimizer={distributed}")
        state = build_training(cfg, hf_dir, 4)
        rows = run_sft(cfg, state)
        out[name] = {"losses": [r["train/loss"] for r in rows], "grad_norms": [r["train/grad_norm"] for r in rows],
                     "param_dtypes": {str(p.dtype) for p in unwrap(state.model).parameters()},
                     **_optimizer_view(state.optimizer)}
    return out


def dist_opt_runs(hf_dir: str, data_dir: str, out_root: str) -> dict[str, Any]:
    """3 SFT steps at lr 1e-2 on 2 DP ranks with the distributed optimizer on and off; also how many
    elements Adam updates on this rank (a shard, or every parameter) out of the model's."""
    from nemo_r1.models.train import torch_optimizers
    from nemo_r1.trainers.sft import build_training, run_sft

    out: dict[str, Any] = {}
    for distributed in (True, False):
        cfg = _cfg(hf_dir, data_dir, Path(out_root) / f"dist_{distributed}", "train.max_steps=3", "optim.lr=1e-2",
                   f"optim.distributed_optimizer={distributed}")
        from nemo_r1.distributed import init_distributed

        init_distributed(1, 1, seed=0)
        state = build_training(cfg, hf_dir, 3)
        rows = run_sft(cfg, state)
        out[str(distributed)] = {"losses": [r["train/loss"] for r in rows],
                                 "grad_norms": [r["train/grad_norm"] for r in rows],
                                 "classes": _optimizer_view(state.optimizer)["classes"],
                                 "adam_numel": sum(p.numel() for o in torch_optimizers(state.optimizer)
                                                   for g in o.param_groups for p in g["params"]),
                                 "model_numel": sum(p.numel() for p in state.model.parameters())}
    return out
