"""A process pool for CPU-heavy scoring (math-verify) with a hard per-item wall limit.

Why processes: math-verify is pure Python (sympy), so threads would serialize on the GIL, and its
CPU-time budget uses a signal handler, which works only in a process's main thread — true in a
pool worker, not in a trainer's helper thread. Why a hard limit on top of the CPU budget: a
signal cannot interrupt C code (a huge integer power inside sympy), so a worker can hang; then
that one worker is killed, its item gives `TIMED_OUT` (scored None) and a fresh worker replaces
it while the others keep scoring.

Why not `multiprocessing.Pool`: it silently replaces workers that die at start-up, forever. A
spawned worker re-imports the main script, so a script that scores at top level (no
`if __name__ == "__main__":` guard) makes every worker die at start-up, and the batch waited for
the wall limit item after item and came back all None. Here each worker sends a "ready"
handshake after its imports and warm-up; a worker that exits before it (or no worker ready within
`STARTUP_GRACE_S`) marks the pool broken at once, and `map` raises `PoolStartupError` (now and on
every later call, without spawning again). The caller decides: `accuracy` then scores in its own
process with one warning that names the guard (on the main thread, where its CPU-time budget
works) and raises that error otherwise. A broken pool never turns into None scores.
"""

from __future__ import annotations

import atexit
import importlib
import logging
import multiprocessing as mp
import os
import signal
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import Any

log = logging.getLogger(__name__)

TIMED_OUT = object()
"""Placeholder result for an item whose worker passed the hard wall limit (and was killed) or died."""

STARTUP_GRACE_S = 60.0
"""How long to wait for the first worker's handshake (interpreter start + imports)."""

MAIN_GUARD_HINT = ('a spawned worker re-imports the main script, so a script that scores at top level '
                   'needs `if __name__ == "__main__":` around that code')


class PoolStartupError(RuntimeError):
    """The pool's workers could not start; no item was scored by them."""


def _worker_main(conn: Connection, imports: tuple[str, ...], warmup: Callable[[], Any] | None) -> None:
    # Workers must not compete for the cores with torch, nor die on the trainer's Ctrl-C; heavy
    # imports (and lazy ones, by the warm-up) happen before the handshake so that they do not
    # count against any item's wall limit.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for name in imports:
        importlib.import_module(name)
    if warmup is not None:
        warmup()
    conn.send(("ready", None))
    while True:
        try:
            msg = conn.recv()
        except EOFError:  # the parent is gone
            return
        if msg is None:
            return
        fn, item = msg
        try:
            out = ("ok", fn(item))
        except Exception as e:  # noqa: BLE001 - re-raised in the parent
            out = ("err", e)
        try:
            conn.send(out)
        except Exception as e:  # noqa: BLE001 - an unpicklable result or exception
            conn.send(("err", RuntimeError(f"{type(e).__name__}: {e}")))


@dataclass(eq=False)
class _Worker:
    proc: Any
    conn: Connection
    started: float
    ready: bool = False
    item: int | None = None
    deadline: float = field(default=float("inf"))


class ScoringPool:
    """`map(fn, items)` over `workers` spawned processes, in order, with a per-item wall limit.

    `fn` (and `warmup`, run in each worker after `imports` and before its handshake) must be
    module-level functions (they are pickled by name). Workers are started on first use and
    reused; spawn (not fork) so that a trainer holding torch/vLLM threads is never forked. If they
    cannot start (see the module docstring) `map` raises `PoolStartupError` instead of waiting.
    """

    def __init__(self, workers: int, hard_timeout_s: float = 30.0, imports: tuple[str, ...] = (),
                 warmup: Callable[[], Any] | None = None) -> None:
        if workers < 1:
            raise ValueError(f"ScoringPool needs workers >= 1, got {workers}")
        self.workers = workers
        self.hard_timeout_s = hard_timeout_s
        self.imports = imports
        self.warmup = warmup
        self.broken: str | None = None
        """Why the workers could not start; set once, then `map` raises without spawning again."""
        self._procs: list[_Worker] = []
        self._lock = threading.Lock()

    def _spawn(self) -> None:
        ctx = mp.get_context("spawn")
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=_worker_main, args=(child, self.imports, self.warmup), daemon=True,
                           name="nemo_r1-scoring")
        proc.start()
        child.close()  # so that the worker's exit shows as EOF here
        self._procs.append(_Worker(proc, parent, time.monotonic()))

    def map(self, fn: Callable[[Any], Any], items: list[Any]) -> list[Any]:
        """Results in input order; an item past `hard_timeout_s` (or whose worker died) gives `TIMED_OUT`.

        Raises `PoolStartupError` when the workers cannot start, and re-raises an exception of `fn`.
        """
        with self._lock:
            if self.broken is not None:
                raise PoolStartupError(self.broken)
            try:
                return self._map(fn, items)
            except BaseException:
                self._kill()  # in-flight items would otherwise answer the next call
                raise

    def _map(self, fn: Callable[[Any], Any], items: list[Any]) -> list[Any]:
        results: list[Any] = [TIMED_OUT] * len(items)
        todo = deque(range(len(items)))
        while todo or any(w.item is not None for w in self._procs):
            while len(self._procs) < self.workers:
                self._spawn()
            for w in self._procs:
                if w.ready and w.item is None and todo:
                    w.item = todo.popleft()
                    w.deadline = time.monotonic() + self.hard_timeout_s
                    w.conn.send((fn, items[w.item]))
            self._wait()
            for w in list(self._procs):
                self._collect(w, results)
            self._check_startup()
            now = time.monotonic()
            for w in list(self._procs):
                if w.item is not None and now >= w.deadline:
                    log.warning("scoring item %d exceeded %.0fs wall limit; killing its worker",
                                w.item, self.hard_timeout_s)
                    self._drop(w)
        return results

    def _wait(self) -> None:
        """Block until a worker answers or exits, or the next deadline passes."""
        deadlines = [w.deadline for w in self._procs if w.item is not None]
        if not any(w.ready for w in self._procs):
            deadlines += [w.started + STARTUP_GRACE_S for w in self._procs]
        timeout = max(0.0, min(deadlines, default=time.monotonic() + 1.0) - time.monotonic())
        wait([w.conn for w in self._procs] + [w.proc.sentinel for w in self._procs], timeout)

    def _collect(self, w: _Worker, results: list[Any]) -> None:
        """Read what `w` sent; a worker that died gets replaced (its item, if any, stays TIMED_OUT)."""
        eof = False
        try:
            while w.conn.poll():
                kind, value = w.conn.recv()
                if kind == "ready":
                    w.ready = True
                elif kind == "ok":
                    results[w.item] = value
                    w.item, w.deadline = None, float("inf")
                else:
                    raise value
        except (EOFError, OSError):
            eof = True
        if not eof and w.proc.exitcode is None:
            return
        w.proc.join(5.0)  # it closed its end: let it finish exiting, for the exit code
        if not w.ready:
            self._fail(f"a scoring worker exited before it started (exit code {w.proc.exitcode})")
        if w.item is not None:
            log.warning("scoring worker died (exit code %s) on item %d; it scores None",
                        w.proc.exitcode, w.item)
        self._drop(w)

    def _check_startup(self) -> None:
        if self._procs and not any(w.ready for w in self._procs):
            if time.monotonic() > min(w.started for w in self._procs) + STARTUP_GRACE_S:
                self._fail(f"no scoring worker started within {STARTUP_GRACE_S:.0f}s")

    def _fail(self, what: str) -> None:
        self.broken = (f"{what}; most often because {MAIN_GUARD_HINT} (the workers' own error is "
                       "printed above on stderr)")
        raise PoolStartupError(self.broken)

    def _drop(self, w: _Worker) -> None:
        if w.proc.is_alive():
            w.proc.terminate()  # SIGTERM ends C code too; SIGKILL if it does not
            w.proc.join(2.0)
            if w.proc.is_alive():
                w.proc.kill()
        w.proc.join()
        w.conn.close()
        self._procs.remove(w)

    def _kill(self) -> None:
        for w in list(self._procs):
            self._drop(w)

    def close(self) -> None:
        with self._lock:
            self._kill()


_POOLS: dict[tuple, ScoringPool] = {}
_POOLS_LOCK = threading.Lock()


def shared_pool(workers: int, hard_timeout_s: float, imports: tuple[str, ...] = (),
                warmup: Callable[[], Any] | None = None) -> ScoringPool:
    """One pool per (workers, limit, imports, warmup) for the whole process, so rewards do not each spawn their own."""
    key = (workers, hard_timeout_s, imports, warmup)
    with _POOLS_LOCK:
        if key not in _POOLS:
            _POOLS[key] = ScoringPool(workers, hard_timeout_s, imports, warmup)
        return _POOLS[key]


def default_workers() -> int:
    """All cores, at most 8: the trainer waits on the rewards while they are scored."""
    return max(1, min(8, os.cpu_count() or 1))


@atexit.register
def _close_all() -> None:
    for pool in _POOLS.values():
        pool.close()
