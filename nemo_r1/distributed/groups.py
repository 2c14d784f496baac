"""Process groups for TP x PP x DP from a torchrun-style environment.

Every entry point (trainer, converter, test rank) calls `init_distributed` once: it reads RANK,
WORLD_SIZE, MASTER_ADDR, MASTER_PORT, LOCAL_RANK (as torchrun, submitit and our launchers set
them), picks gloo on CPU and NCCL on GPU, applies the CPU shim when CUDA is absent, and builds
megatron's parallel_state groups plus its RNG tracker. A plain `python script.py` (no env) is a
world of one.
"""

from __future__ import annotations

import datetime
import os
import socket
from dataclasses import dataclass

import torch
import torch.distributed as dist

from nemo_r1.malloc import keep_freed_memory
from nemo_r1.platform import apply_cpu_patches, cuda_available


@dataclass(frozen=True)
class Layout:
    """Where this rank sits in the TP x PP x DP grid (megatron's default order tp-cp-ep-dp-pp)."""

    rank: int
    world_size: int
    local_rank: int
    tp: int
    pp: int
    dp: int
    tp_rank: int
    pp_rank: int
    dp_rank: int

    @property
    def is_first_stage(self) -> bool:
        return self.pp_rank == 0

    @property
    def is_last_stage(self) -> bool:
        return self.pp_rank == self.pp - 1


def free_port() -> int:
    """An unused localhost TCP port (for single-process runs and spawned test ranks)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"environment variable {name}={raw!r} must be an integer (torchrun-style rank env)") from None


def check_layout(world_size: int, tp: int, pp: int) -> int:
    """Return the data-parallel size, or raise naming the sizes that do not fit."""
    if tp < 1 or pp < 1:
        raise ValueError(f"parallel.tensor={tp} and parallel.pipeline={pp} must both be >= 1")
    if world_size % (tp * pp) != 0:
        raise ValueError(f"world size {world_size} is not divisible by parallel.tensor x parallel.pipeline = "
                         f"{tp} x {pp} = {tp * pp}; use a world size that is a multiple of {tp * pp} or "
                         "change the layout")
    return world_size // (tp * pp)


def init_distributed(tp: int = 1, pp: int = 1, seed: int = 1234, timeout_minutes: int = 30) -> Layout:
    """Init torch.distributed + megatron parallel_state for TP x PP x DP.

    Idempotent; called again with another layout it rebuilds the megatron groups over the same
    world (models built for the old layout must not be used afterwards)."""
    from megatron.core import parallel_state as ps
    from megatron.core.tensor_parallel.random import model_parallel_cuda_manual_seed

    cpu = not cuda_available()
    if cpu:
        apply_cpu_patches()
        keep_freed_memory()  # training steps re-fault their working set otherwise (nemo_r1/malloc.py)
    rank = _env_int("RANK", 0)
    world = dist.get_world_size() if dist.is_initialized() else _env_int("WORLD_SIZE", 1)
    local_rank = _env_int("LOCAL_RANK", 0)
    check_layout(world, tp, pp)
    if not dist.is_initialized():
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        if "MASTER_PORT" not in os.environ:
            if world > 1:
                raise RuntimeError(f"WORLD_SIZE={world} but MASTER_PORT is not set: launch with torchrun, "
                                   "nemo-r1 launch, or set MASTER_ADDR/MASTER_PORT")
            os.environ["MASTER_PORT"] = str(free_port())
        if not cpu:
            torch.cuda.set_device(local_rank)
        dist.init_process_group("gloo" if cpu else "nccl", rank=rank, world_size=world,
                                timeout=datetime.timedelta(minutes=timeout_minutes))
    if ps.model_parallel_is_initialized():
        if (ps.get_tensor_model_parallel_world_size(), ps.get_pipeline_model_parallel_world_size()) != (tp, pp):
            ps.destroy_model_parallel()  # same world, another layout (e.g. a conversion inside a job)
    if not ps.model_parallel_is_initialized():
        ps.initialize_model_parallel(tensor_model_parallel_size=tp, pipeline_model_parallel_size=pp,
                                     distributed_timeout_minutes=timeout_minutes)
    model_parallel_cuda_manual_seed(seed)
    return current_layout()


def current_layout() -> Layout:
    """The Layout of an initialized run (parallel_state must be up)."""
    from megatron.core import parallel_state as ps

    return Layout(rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=_env_int("LOCAL_RANK", 0),
                  tp=ps.get_tensor_model_parallel_world_size(), pp=ps.get_pipeline_model_parallel_world_size(),
                  dp=ps.get_data_parallel_world_size(), tp_rank=ps.get_tensor_model_parallel_rank(),
                  pp_rank=ps.get_pipeline_model_parallel_rank(), dp_rank=ps.get_data_parallel_rank())


def destroy_distributed() -> None:
    """Tear down megatron groups and the default group (so a process can re-init another layout)."""
    from megatron.core import parallel_state as ps

    if ps.model_parallel_is_initialized():
        ps.destroy_model_parallel()
    if dist.is_initialized():
        dist.destroy_process_group()
