"""Cluster smoke jobs: prove a launch works end to end before spending GPU hours on it.

`train_tiny_gpt` trains a tiny megatron-core GPT with tensor parallelism on whatever ranks the
launcher started (NCCL on GPUs, gloo on CPU), writes metrics.jsonl, checkpoints per rank and
resumes from the latest checkpoint, and stops cleanly on SIGTERM (the launcher's time-limit and
preemption signal) after saving. Run it through `launchers.launch(opts, train_tiny_gpt, out)` on
a new cluster, or a new node type, to check rendezvous, collectives, requeue and shared storage.
"""

from __future__ import annotations

import os
import shutil
import socket
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch


def _init_distributed(timeout_s: float = 300.0) -> None:
    import torch.distributed as dist

    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
        dist.init_process_group(backend=backend, timeout=timedelta(seconds=timeout_s))


def allreduce_check() -> dict[str, Any]:
    """Each rank contributes rank+1; every rank must see world*(world+1)/2."""
    import torch.distributed as dist

    _init_distributed()
    world, rank = dist.get_world_size(), dist.get_rank()
    t = torch.tensor([float(rank + 1)], device="cuda" if torch.cuda.is_available() else "cpu")
    dist.all_reduce(t)
    total = float(t.item())
    dist.destroy_process_group()
    if total != world * (world + 1) / 2:
        raise RuntimeError(f"all-reduce gave {total}, expected {world * (world + 1) / 2}")
    return {"rank": rank, "world_size": world, "sum": total, "host": socket.gethostname(),
            "local_rank": int(os.environ["LOCAL_RANK"]), "node_rank": int(os.environ["NODE_RANK"])}


def _batch(step: int, seed: int, batch: int, seq: int, vocab: int) -> torch.Tensor:
    """Arithmetic progressions mod vocab: learnable, and a pure function of (seed, step) so a
    resumed run sees exactly the batches an uninterrupted one would."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + step)
    start = torch.randint(0, vocab, (batch, 1), generator=g)
    stride = torch.randint(1, 4, (batch, 1), generator=g)
    return (start + stride * torch.arange(seq + 1)) % vocab


def _latest_checkpoint(root: Path) -> tuple[int, Path] | None:
    steps = [(int(p.name.split("_")[1]), p) for p in root.glob("step_*") if p.name.split("_")[1].isdigit()]
    return max(steps) if steps else None


def train_tiny_gpt(output_dir: str, steps: int = 4, tp: int = 2, seed: int = 0, hidden: int = 128,
                   layers: int = 2, vocab: int = 256, seq: int = 32, batch: int = 4, lr: float = 3e-3,
                   checkpoint_every: int = 1, stall_after_step: int | None = None,
                   stall_max_s: float = 600.0) -> dict[str, Any]:
    """Train `steps` optimizer steps of a GPT (head dim 64) at tensor-parallel size `tp`.

    Resumes from output_dir/checkpoints/step_N (the latest) when present. `stall_after_step`
    makes a fresh (not resumed) run idle after that step until it is told to stop, like a long
    run caught by its time limit; tests use it to exercise requeue deterministically.
    Returns this rank's summary: losses per step, where it resumed from, whether it stopped early.
    """
    import torch.distributed as dist
    from megatron.core import parallel_state as ps
    from megatron.core.models.gpt import GPTModel
    from megatron.core.models.gpt.gpt_layer_specs import get_gpt_layer_local_spec
    from megatron.core.transformer.transformer_config import TransformerConfig

    from nemo_r1.distributed import destroy_distributed, init_distributed
    from nemo_r1.metrics import MetricsLogger
    from nemo_r1.signals import StopFlag

    torch.set_num_threads(1)
    if hidden % 64 or (hidden // 64) % tp:
        raise ValueError(f"hidden={hidden} gives {hidden // 64} heads of dim 64, not divisible by tp={tp}; "
                         f"use hidden={64 * tp} or a multiple")
    layout = init_distributed(tp=tp, seed=seed)  # reads the RANK/MASTER_* env the launcher exported
    world, rank = layout.world_size, layout.rank
    torch.manual_seed(seed)
    cfg = TransformerConfig(num_layers=layers, hidden_size=hidden, num_attention_heads=hidden // 64,
                            use_cpu_initialization=True, params_dtype=torch.float32, hidden_dropout=0.0,
                            attention_dropout=0.0)
    model = GPTModel(config=cfg, transformer_layer_spec=get_gpt_layer_local_spec(), vocab_size=vocab,
                     max_sequence_length=seq)
    device = torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    model.to(device)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    dp_group, dp = ps.get_data_parallel_group(), layout.dp
    tp_rank, dp_rank = layout.tp_rank, layout.dp_rank

    out = Path(output_dir)
    ckpt_root = out / "checkpoints"
    latest = _latest_checkpoint(ckpt_root)
    start = 0
    if latest is not None:
        start, path = latest
        state = torch.load(path / f"tp_rank_{tp_rank:02d}.pt", map_location=device, weights_only=True)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
    logger = MetricsLogger(out, tensorboard=False, resume_step=start if latest else None) if rank == 0 else None

    def save(step: int) -> None:
        """Every TP rank writes its shard into step_N.tmp; rank 0 renames it once all wrote."""
        tmp = ckpt_root / f"step_{step}.tmp"
        if rank == 0:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        dist.barrier()
        if dp_rank == 0:
            torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "step": step},
                       tmp / f"tp_rank_{tp_rank:02d}.pt")
        dist.barrier()
        if rank == 0:
            final = ckpt_root / f"step_{step}"
            shutil.rmtree(final, ignore_errors=True)
            os.replace(tmp, final)
        dist.barrier()

    def any_rank_stopping(flag: bool) -> bool:
        t = torch.tensor([1.0 if flag else 0.0], device=device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)  # all ranks must agree to stop at the same step
        return bool(t.item())

    losses: dict[int, float] = {}
    stopped = False
    step = start
    with StopFlag() as stop:
        for step in range(start + 1, steps + 1):
            t0 = time.perf_counter()
            data = _batch(step, seed, batch * dp, seq, vocab)[dp_rank * batch:(dp_rank + 1) * batch].to(device)
            tokens, labels = data[:, :-1].contiguous(), data[:, 1:].contiguous()
            pos = torch.arange(seq, device=device).unsqueeze(0).expand(batch, -1)
            loss = model(tokens, pos, None, labels=labels).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if dp > 1:
                for p in model.parameters():
                    if p.grad is not None:
                        dist.all_reduce(p.grad, group=dp_group)
                        p.grad /= dp
            opt.step()
            lv = loss.detach().clone()
            if dp > 1:
                dist.all_reduce(lv, group=dp_group)
                lv /= dp
            losses[step] = float(lv.item())
            if logger is not None:
                logger.log(step, {"train/loss": losses[step], "timing/step_s": time.perf_counter() - t0,
                                  "world_size": world})
            if step % checkpoint_every == 0 or step == steps:
                save(step)
            if stall_after_step is not None and latest is None and step == stall_after_step:
                deadline = time.monotonic() + stall_max_s
                while not any_rank_stopping(stop.stop):
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"stalled {stall_max_s:.0f}s after step {step} without a stop signal")
                    time.sleep(0.5)
            if any_rank_stopping(stop.stop):
                if step % checkpoint_every:
                    save(step)
                stopped = True
                break
    if logger is not None:
        logger.close()
    destroy_distributed()
    return {"rank": rank, "world_size": world, "tp": tp, "tp_rank": tp_rank, "host": socket.gethostname(),
            "node_rank": int(os.environ.get("NODE_RANK", 0)), "resumed_from": start if latest else None,
            "last_step": step, "stopped": stopped, "losses": losses}


def sleep_for(seconds: float) -> float:
    """A job that only occupies its allocation (for cancellation and queueing checks)."""
    time.sleep(seconds)
    return seconds
