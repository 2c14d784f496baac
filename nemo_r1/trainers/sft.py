"""`nemo-r1 sft`: supervised fine-tuning (R1 distillation) of a Megatron model on packed documents.

Every rank runs this loop. Step k trains on the k-th global batch of the seeded packed epochs
(`sft_data`), each DP rank on its contiguous share cut into micro-batches; the loss of every
micro-batch is its token-sum NLL divided by the loss tokens of the whole global batch
(`algorithms.sft.nll_loss`), and `models.train.train_step` sums gradients over micro-batches and
DP ranks, so the update is that of one mean over the global batch however it is cut. A checkpoint
holds the weights, optimizer, LR schedule, RNG and the step, which fixes the data position.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from nemo_r1.algorithms.sft import nll_loss
from nemo_r1.config import Config, ConfigError, load_config, save_config, to_dict
from nemo_r1.signals import StopFlag
from nemo_r1.trainers.lifecycle import (
    any_rank,
    checkpoint_due,
    finish_run,
    optim_settings,
    prune_checkpoints,
    resume_dir,
)
from nemo_r1.trainers.sft_data import SFTData, build_sft_data, load_documents


def check_sft_config(cfg: Config) -> None:
    """Fail in a second, naming the key, before ranks start or a model loads."""
    from nemo_r1.schedules import refuse_schedules
    from nemo_r1.trainers.grpo_run import check_model_path

    refuse_schedules(cfg, "sft")  # the keys a schedule can set are GRPO's; none is read here
    check_model_path(cfg.model.path)
    if not cfg.data.train:
        raise ConfigError("data.train is empty; set it to a .jsonl/.json/.parquet file, a dataset folder or hf:owner/name")


def build_training(cfg: Config, hf_dir: str, total_steps: int) -> Any:
    """The sharded model from the HF checkpoint, wrapped with DDP, optimizer and LR schedule."""
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

    info = model_info(read_hf_config(hf_dir), tp=cfg.parallel.tensor)
    model = build_model(info, dtype=cfg.model.dtype, **recompute_overrides(cfg.model.recompute),
                        **sequence_parallel_overrides(cfg.parallel.sequence_parallel, cfg.parallel.tensor,
                                                      cuda_available()))
    load_hf_weights(model, hf_dir)
    return setup_training(model, optim_settings(cfg.optim, total_steps), total_steps=total_steps,
                          clip_grad=cfg.train.grad_clip)


def _dp() -> tuple[int, int, Any]:
    from megatron.core import parallel_state as ps

    return ps.get_data_parallel_rank(), ps.get_data_parallel_world_size(), ps.get_data_parallel_group()


def _dp_sum(value: float, group: Any) -> float:
    t = torch.tensor([value], dtype=torch.float64)
    if dist.is_initialized():
        dist.all_reduce(t, group=group)
    return float(t.item())


def loss_fn_for(num_tokens: float):  # noqa: ANN201 - a closure the pipeline schedule calls
    """Per micro-batch: token-sum NLL over its loss tokens / the global batch's loss tokens."""
    def loss_fn(logprobs: torch.Tensor, mb: dict[str, torch.Tensor]):  # noqa: ANN202
        return nll_loss(logprobs, mb["loss_mask"], num_tokens), {"tokens": float(mb["loss_mask"].sum())}

    return loss_fn


def train_on_step(state: Any, data: SFTData, step: int, micro: int) -> dict[str, float]:
    """One optimizer step on global batch `step`; every rank gets the global loss back."""
    from nemo_r1.models.train import train_step

    bins = data.global_bins(step)
    dp_rank, dp_size, group = _dp()
    mbs = data.micro_batches(bins, dp_rank, dp_size, micro)
    state.model.train()
    out, stats = train_step(state, mbs, loss_fn_for(float(data.loss_tokens(bins))))
    return {"loss": _dp_sum(out.loss, group), "grad_norm": stats["grad_norm"], "lr": stats["lr"],
            "packing_efficiency": data.epochs.efficiency(bins), "tokens": float(data.real_tokens(bins)),
            "loss_tokens": float(data.loss_tokens(bins))}


@torch.no_grad()
def eval_loss(state: Any, data: SFTData, micro: int) -> float:
    """Mean token NLL over every loss token of the eval set (epoch 0's packing, all sequences)."""
    from nemo_r1.models.forward import forward_backward_logprobs

    bins = data.epochs.bins(0)
    dp_rank, dp_size, group = _dp()
    mine = bins[dp_rank::dp_size]
    total = 0.0
    if mine:
        mbs = data.micro_batches(mine, 0, 1, micro)
        state.model.eval()
        out = forward_backward_logprobs(state.model, mbs, loss_fn_for(float(data.loss_tokens(bins))),
                                        forward_only=True)
        state.model.train()
        total = out.loss
    return _dp_sum(total, group)


def run_sft(cfg: Config, state: Any = None) -> list[dict[str, Any]]:  # noqa: C901 - the loop
    """Train to `sft.epochs` epochs (or `train.max_steps`); returns the metric rows (rank 0).

    state: an already built TrainState for this layout (tests reuse one model across runs)."""
    from transformers import AutoTokenizer

    from nemo_r1.console import Progress
    from nemo_r1.distributed import init_distributed
    from nemo_r1.metrics import MetricsLogger
    from nemo_r1.models.checkpoint import checkpoint_dir, load_checkpoint, save_checkpoint
    from nemo_r1.trainers.grpo_run import resolve_model

    check_sft_config(cfg)
    from nemo_r1.platform import cuda_available

    if cfg.sft.packing and cuda_available():
        # transformer-engine attention (the GPU layer spec) ignores a dense block mask: documents
        # would attend to each other silently; packed rows there need the THD path (PackedSeqParams)
        raise ConfigError("sft.packing=true runs on the CPU layer spec only for now; set sft.packing=false on GPU")
    torch.manual_seed(cfg.train.seed)
    init_distributed(cfg.parallel.tensor, cfg.parallel.pipeline, seed=cfg.train.seed)
    is_rank0 = dist.get_rank() == 0
    hf_dir = resolve_model(cfg.model.path)
    # data before the model: a bad row fails in seconds, not after the build
    tokenizer = AutoTokenizer.from_pretrained(hf_dir)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
    fitted = load_documents(cfg, tokenizer)
    data = build_sft_data(cfg, fitted, pad_id)
    eval_data = None
    if cfg.data.eval and cfg.sft.eval_every:
        ev = load_documents(cfg, tokenizer, which="eval")
        eval_data = SFTData(build_sft_data(cfg, ev, pad_id).epochs, 1, pad_id)
    total = cfg.sft.epochs * data.steps_per_epoch if cfg.sft.epochs else cfg.train.max_steps
    if state is None:
        state = build_training(cfg, hf_dir, total)
    start = 0
    resume_from = resume_dir(cfg.train.resume, cfg.output_dir)
    if resume_from is not None:
        start = int(load_checkpoint(resume_from, state.model, state.optimizer, state.scheduler)["step"])
        if is_rank0:
            print(f"[sft] resumed from {resume_from} (step {start})", flush=True)
    out = Path(cfg.output_dir)
    log = None
    if is_rank0:
        save_config(cfg, out)
        log = MetricsLogger(out, tensorboard=cfg.logging.tensorboard, wandb=cfg.logging.wandb,
                            wandb_project=cfg.logging.wandb_project, run_config=to_dict(cfg),
                            resume_step=start if resume_from else None)
        if fitted.truncated or fitted.dropped:
            print(f"[sft] over-long or target-free documents: {fitted.truncated} truncated, {fitted.dropped} "
                  f"dropped (sft.overlong={cfg.sft.overlong}, train.max_seq_len={cfg.train.max_seq_len})", flush=True)
    rows: list[dict[str, Any]] = []
    bar = Progress(total, initial=start, desc="sft", enabled=is_rank0)

    def save(step: int) -> None:
        save_checkpoint(checkpoint_dir(cfg.output_dir, step), state.model, state.optimizer, state.scheduler,
                        {"step": step}, hf_dir=hf_dir)
        if is_rank0:
            prune_checkpoints(cfg.output_dir, cfg.checkpoint.keep)

    with StopFlag() as stop:
        for step in range(start, total):
            t0 = time.perf_counter()
            m = train_on_step(state, data, step, cfg.train.micro_batch_size)
            seconds = time.perf_counter() - t0
            row = {"train/loss": m["loss"], "train/grad_norm": m["grad_norm"], "train/lr": m["lr"],
                   "train/tokens_per_s": m["tokens"] / max(seconds, 1e-9),
                   "train/packing_efficiency": m["packing_efficiency"], "train/loss_tokens": m["loss_tokens"],
                   "train/epoch": step / data.steps_per_epoch, "timing/step_s": seconds}
            done = step + 1 == total
            if eval_data is not None and ((step + 1) % cfg.sft.eval_every == 0 or done):
                row["eval/loss"] = eval_loss(state, eval_data, cfg.train.micro_batch_size)
            if is_rank0:
                log.log(step + 1, row)
                rows.append({"step": step + 1, **row})
                bar.update(step + 1, {"loss": f"{row['train/loss']:.4f}", "s/step": f"{seconds:.1f}"})
            stopping = any_rank(stop.stop)
            if checkpoint_due(cfg.checkpoint.every, step + 1, done, cfg.checkpoint.save_final, stopping):
                save(step + 1)
            if stopping:
                break
    bar.close()
    finish_run(log, out, cfg.logging.plots)
    return rows


def _rank_main(cfg: Config) -> list[dict[str, Any]]:
    return run_sft(cfg)


def main(args: argparse.Namespace) -> int:
    """CLI entry: load the config (errors before any heavy import), run on this process or, for a
    TP x PP layout outside a launcher, on that many local CPU ranks."""
    cfg = load_config(args.config, args.overrides)
    check_sft_config(cfg)
    n = cfg.parallel.tensor * cfg.parallel.pipeline
    from nemo_r1.trainers.report import is_first_rank

    talk = is_first_rank()
    length = f"{cfg.sft.epochs} epochs" if cfg.sft.epochs else f"{cfg.train.max_steps} steps"
    if talk:
        print(f"nemo-r1 sft: {cfg.model.path}, data {cfg.data.train} (format {cfg.data.format}), {length} x "
              f"{cfg.train.global_batch_size} sequences of {cfg.train.max_seq_len} tokens"
              f"{' (packed)' if cfg.sft.packing else ''}, lr {cfg.optim.lr:g}, TP{cfg.parallel.tensor} x "
              f"PP{cfg.parallel.pipeline}, output {cfg.output_dir}", flush=True)
    t0 = time.perf_counter()
    from nemo_r1.distributed import under_launcher

    if n > 1 and not under_launcher():
        from nemo_r1.distributed import run_on_cpu_ranks

        rows = run_on_cpu_ranks(_rank_main, n, cfg, threads=max(1, (os.cpu_count() or 1) // n))[0]
    else:
        rows = run_sft(cfg)
    if rows and talk:
        from nemo_r1.console import duration

        k = max(1, min(5, len(rows) // 2))
        first = sum(r["train/loss"] for r in rows[:k]) / k
        last = sum(r["train/loss"] for r in rows[-k:]) / k
        print(f"done in {duration(time.perf_counter() - t0)}: {len(rows)} steps; train/loss first {k} {first:.4f} "
              f"-> last {k} {last:.4f}; metrics {Path(cfg.output_dir) / 'metrics.jsonl'}", flush=True)
    return 0
