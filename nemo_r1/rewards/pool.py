"""A process pool for CPU-heavy scoring (math-verify) with a hard per-item wall limit.

Why processes: math-verify is pure Python (sympy), so threads would serialize on the GIL, and its
own timeouts use `signal.alarm`, which works only in a process's main thread — true in a pool
worker, not in a trainer's helper thread. Why a hard limit on top of math-verify's own timeouts:
an alarm cannot interrupt C code (a huge integer power inside sympy), so a worker can hang; then
the pool is killed, the hung item scores None and the rest of the batch is re-submitted.
"""

from __future__ import annotations

import atexit
import importlib
import logging
import multiprocessing as mp
import os
import signal
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

TIMED_OUT = object()
"""Placeholder result for an item that exceeded the hard wall limit."""


STARTUP_GRACE_S = 60.0
"""Extra wait for the first result of a freshly spawned pool (interpreter start + imports)."""


def _init_worker(imports: tuple[str, ...]) -> None:
    # Workers must not compete for the cores with torch, nor die on the trainer's Ctrl-C; heavy
    # imports happen here so they do not count against the first item's wall limit.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for name in imports:
        importlib.import_module(name)


class ScoringPool:
    """`map(fn, items)` over `workers` spawned processes, in order, with a per-item wall limit.

    `fn` must be a module-level function (it is pickled by name). The pool is created on first use
    and reused; spawn (not fork) so that a trainer holding torch/vLLM threads is never forked.
    """

    def __init__(self, workers: int, hard_timeout_s: float = 30.0, imports: tuple[str, ...] = ()) -> None:
        if workers < 1:
            raise ValueError(f"ScoringPool needs workers >= 1, got {workers}")
        self.workers = workers
        self.hard_timeout_s = hard_timeout_s
        self.imports = imports
        self._pool: Any = None
        self._lock = threading.Lock()

    def _get(self) -> Any:
        if self._pool is None:
            self._pool = mp.get_context("spawn").Pool(self.workers, initializer=_init_worker,
                                                      initargs=(self.imports,))
        return self._pool

    def map(self, fn: Callable[[Any], Any], items: list[Any]) -> list[Any]:
        """Results in input order; an item past `hard_timeout_s` gives `TIMED_OUT`."""
        results: list[Any] = [TIMED_OUT] * len(items)
        pending = list(range(len(items)))
        with self._lock:
            while pending:
                grace = STARTUP_GRACE_S if self._pool is None else 0.0
                it = self._get().imap(fn, [items[i] for i in pending], chunksize=1)
                done = 0
                try:
                    for k, idx in enumerate(pending):
                        results[idx] = it.next(timeout=self.hard_timeout_s + (grace if k == 0 else 0.0))
                        done = k + 1
                except mp.TimeoutError:
                    log.warning("scoring item %d exceeded %.0fs wall limit; restarting the pool",
                                pending[done], self.hard_timeout_s)
                    self._kill()
                    pending = pending[done + 1:]
                    continue
                pending = []
        return results

    def _kill(self) -> None:
        if self._pool is not None:
            self._pool.terminate()
            self._pool.join()
            self._pool = None

    def close(self) -> None:
        with self._lock:
            self._kill()


_POOLS: dict[tuple, ScoringPool] = {}
_POOLS_LOCK = threading.Lock()


def shared_pool(workers: int, hard_timeout_s: float, imports: tuple[str, ...] = ()) -> ScoringPool:
    """One pool per (workers, limit, imports) for the whole process, so rewards do not each spawn their own."""
    key = (workers, hard_timeout_s, imports)
    with _POOLS_LOCK:
        if key not in _POOLS:
            _POOLS[key] = ScoringPool(workers, hard_timeout_s, imports)
        return _POOLS[key]


def default_workers() -> int:
    """All cores, at most 8: the trainer waits on the rewards while they are scored."""
    return max(1, min(8, os.cpu_count() or 1))


@atexit.register
def _close_all() -> None:
    for pool in _POOLS.values():
        pool.close()
