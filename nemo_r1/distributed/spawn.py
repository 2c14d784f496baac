"""Run a function on N local CPU ranks (gloo), for tests and the single-machine converter.

Each rank is a fresh `spawn`ed process with a torchrun-style environment, so the function calls
`init_distributed` exactly as it would under torchrun. Return values come back in rank order; an
exception on any rank stops the others and is raised here as RankFailed: its first line says which
rank failed and why (what the CLI prints), the rest is that rank's traceback (what a test shows).
"""

from __future__ import annotations

import io
import os
import queue
import time
import traceback
from collections.abc import Callable
from typing import Any

import torch
import torch.multiprocessing as mp

from nemo_r1.distributed.groups import free_port


class RankFailed(RuntimeError):
    """A spawned rank raised; `summary` is one line (rank, error type, message), str() adds the traceback."""

    def __init__(self, rank: int, nprocs: int, error: str, tb: str) -> None:
        self.rank, self.nprocs, self.error, self.traceback = rank, nprocs, error, tb
        self.summary = f"rank {rank} of {nprocs} failed: {error}"
        super().__init__(f"{self.summary}\n{tb}")

    def __reduce__(self) -> tuple:  # pickled by submitit and multiprocessing: rebuild from the parts
        return RankFailed, (self.rank, self.nprocs, self.error, self.traceback)


def _one_line(e: BaseException) -> str:
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    return f"{type(e).__name__}: {lines[0]}" if lines else type(e).__name__


def _child(fn: Callable[..., Any], rank: int, world: int, port: int, threads: int, cpu_only: bool, args: tuple,
           out: Any) -> None:
    if cpu_only:
        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # before anything initialises CUDA in this process
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(world),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # busy-waiting OpenMP threads starve the other ranks
    from nemo_r1 import console

    console.setup()  # the parent's console mode (inherited through the environment)
    import torch

    torch.set_num_threads(threads)
    try:
        result = fn(*args)
        # By value: a queue shares tensors through file descriptors that this process serves, and
        # it may exit before the parent unpickles them (FileNotFoundError in the parent).
        buf = io.BytesIO()
        torch.save(result, buf)
        out.put((rank, True, buf.getvalue()))
    except BaseException as e:  # noqa: B036 - report anything, including KeyboardInterrupt, to the parent
        out.put((rank, False, (_one_line(e), traceback.format_exc())))
    finally:
        from nemo_r1.distributed.groups import destroy_distributed

        try:
            destroy_distributed()
        except Exception:
            pass


def under_launcher() -> bool:
    """True inside a multi-rank launch (torchrun, submitit, `nemo-r1 launch`, our own spawn)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def run_on_cpu_ranks(fn: Callable[..., Any], nprocs: int, *args: Any, threads: int = 1,
                     timeout_s: float = 900.0, cpu_only: bool = True) -> list[Any]:
    """Call `fn(*args)` on `nprocs` spawned ranks; returns [result of rank 0, rank 1, ...].

    `fn` must be importable by name (module level) and its result picklable. `cpu_only` hides any
    GPU from the ranks, so they use gloo even on a GPU machine (conversion, tests).
    """
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    port = free_port()
    procs = [ctx.Process(target=_child, args=(fn, r, nprocs, port, threads, cpu_only, args, out), daemon=False)
             for r in range(nprocs)]
    for p in procs:
        p.start()
    results: dict[int, Any] = {}
    deadline = time.monotonic() + timeout_s
    try:
        while len(results) < nprocs:
            try:
                rank, ok, value = out.get(timeout=1.0)
            except queue.Empty:
                crashed = [(r, p.exitcode) for r, p in enumerate(procs) if p.exitcode not in (None, 0)]
                if crashed:
                    raise RuntimeError(f"rank(s) exited without a result (rank, exit code): {crashed}") from None
                if time.monotonic() > deadline:
                    missing = sorted(set(range(nprocs)) - set(results))
                    raise TimeoutError(f"ranks {missing} gave no result in {timeout_s:.0f}s") from None
                continue
            if not ok:
                raise RankFailed(rank, nprocs, *value)
            results[rank] = torch.load(io.BytesIO(value), weights_only=False)  # our own child's result
    finally:
        for p in procs:
            p.join(timeout=30 if len(results) == nprocs else 1)
        for p in procs:
            if p.is_alive():
                p.terminate()
                p.join(timeout=10)
        for p in procs:  # a rank that handles SIGTERM (a trainer saving on stop) and is stuck anyway
            if p.is_alive():
                p.kill()
                p.join(timeout=10)
    return [results[r] for r in range(nprocs)]
