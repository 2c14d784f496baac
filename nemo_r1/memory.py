"""How much memory a run holds: resident memory of the whole process tree, its peak, glibc's heap.

A GRPO run on CPU is one training process holding the policy *and* the vLLM engine, plus the
reward pool's spawned workers; what a laptop has to fit is the sum over that tree, at its peak.
torch's CPU allocations are plain `malloc`s (no caching allocator to ask), so the numbers come
from the kernel: RSS per process from psutil (`/proc/PID/statm`: a counter read, O(1) whatever
the process size), PSS from `/proc/PID/smaps_rollup` when shared pages must not count twice (it
walks the page tables, so the bench uses it, the per-step metrics do not), and glibc's own view
of its heap (`mallinfo2`: bytes in use vs bytes free but kept) for the allocator's slack.

`memory_metrics()` is what every GRPO metrics row gets under `memory/`.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import psutil

GIB = float(1 << 30)


def _tree(root: psutil.Process) -> Iterator[psutil.Process]:
    yield root
    try:
        yield from root.children(recursive=True)
    except psutil.Error:  # the root itself is gone
        return


def _is_unexeced_fork(child: psutil.Process, root_cmdline: list[str] | None) -> bool:
    """A child forked from the root that has not exec'd yet (a subprocess about to start) maps the
    root's pages copy-on-write; its RSS is the root's again. Counting it would double the tree for
    the few milliseconds it lives, so it is left out (its own writes are too brief to matter)."""
    if root_cmdline is None:
        return False
    try:
        return child.cmdline() == root_cmdline
    except psutil.Error:
        return True  # gone already


def tree_rss(pid: int | None = None) -> dict[int, int]:
    """RSS bytes of `pid` (default: this process) and of every live descendant, by pid.

    Unexec'd forks of the root are skipped (see `_is_unexeced_fork`); processes that exit while
    being read are skipped too."""
    try:
        root = psutil.Process(pid)
        cmd = root.cmdline()
    except psutil.Error:  # gone (a command that exited): an empty tree
        return {}
    out: dict[int, int] = {}
    for p in _tree(root):
        if p.pid != root.pid and _is_unexeced_fork(p, cmd):
            continue
        try:
            out[p.pid] = p.memory_info().rss
        except psutil.Error:
            continue
    return out


def pss_bytes(pid: int) -> int:
    """Proportional set size of one process: shared pages divided among their sharers, so a sum
    over processes counts each page once (Linux only; falls back to RSS elsewhere)."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return psutil.Process(pid).memory_info().rss


def tree_pss(pid: int | None = None) -> dict[int, int]:
    """PSS bytes of `pid` and its descendants, by pid (a page table walk per process: not per step)."""
    out: dict[int, int] = {}
    for child in tree_rss(pid):
        try:
            out[child] = pss_bytes(child)
        except (psutil.Error, OSError):
            continue
    return out


def peak_rss_self(pid: int | None = None) -> int:
    """The kernel's high-water mark of this process's (or `pid`'s) RSS: exact, no sampling can miss it."""
    try:
        with open(f"/proc/{pid or 'self'}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    if pid is not None:
        return 0
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
                 "fordblks", "keepcost")]


def malloc_stats() -> dict[str, int] | None:
    """glibc's heap: `heap` bytes obtained with brk/arenas, `in_use` by live blocks, `free` bytes
    held but unused (the allocator's slack), `mmapped` bytes in separate mmaps. None off glibc
    (or before 2.33, which lacks mallinfo2). It walks the free lists of every arena: call it at
    chosen points, not in a hot loop."""
    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        fn = ctypes.CDLL(name).mallinfo2
    except (OSError, AttributeError):
        return None
    fn.restype = _MallInfo2
    m = fn()
    return {"heap": int(m.arena), "in_use": int(m.uordblks) + int(m.hblkhd), "free": int(m.fordblks),
            "mmapped": int(m.hblkhd)}


@dataclass
class TreeSampler:
    """Samples the process tree's RSS on a daemon thread and keeps the peak (and, on request, a
    timeline with the label of the phase each sample fell in).

    The kernel keeps a peak per process but not for a tree (children peak at other moments), so
    the tree's peak needs sampling; `peak` is never below this process's own kernel-tracked
    peak plus its children's RSS now, so a spike shorter than `interval` in this process is not lost.
    """

    interval: float = 0.5
    timeline: bool = False
    pid: int | None = None
    """The root of the tree; None = this process."""
    peak: int = 0
    label: str = ""
    samples: list[tuple[float, str, int, int]] = field(default_factory=list)
    """(seconds since start, label, tree RSS bytes, children's RSS bytes) when `timeline`."""
    phase_peaks: dict[str, int] = field(default_factory=dict)
    """Highest tree RSS seen while each label was current."""

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._t0 = time.perf_counter()
        self._lock = threading.Lock()

    def sample(self) -> int:
        """Read the tree now, fold it into the peaks; returns the tree's RSS bytes."""
        by_pid = tree_rss(self.pid)
        me = self.pid or os.getpid()
        total = sum(by_pid.values())
        children = total - by_pid.get(me, 0)
        floor = peak_rss_self(self.pid) + children if me in by_pid else 0
        with self._lock:
            self.peak = max(self.peak, total, floor)
            self.phase_peaks[self.label] = max(self.phase_peaks.get(self.label, 0), total)
            if self.timeline:
                self.samples.append((time.perf_counter() - self._t0, self.label, total, children))
        return total

    def mark(self, label: str) -> int:
        """Start a new phase: sample at its boundary (the end of the last one) and relabel."""
        total = self.sample()
        with self._lock:
            self.label = label
        return total

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.sample()
            except Exception:  # noqa: BLE001 - a monitor must never take the run down
                continue

    def start(self) -> TreeSampler:
        if self._thread is None:
            self.sample()
            self._thread = threading.Thread(target=self._run, daemon=True, name="nemo_r1-memory")
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self.sample()

    def __enter__(self) -> TreeSampler:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


_SAMPLER: TreeSampler | None = None


def run_sampler() -> TreeSampler:
    """The process's one background sampler for the metrics (started on first use, 2 samples/s:
    a few /proc counter reads each, well under a millisecond)."""
    global _SAMPLER
    if _SAMPLER is None:
        _SAMPLER = TreeSampler(interval=0.5).start()
    return _SAMPLER


def engine_kv_bytes(rollout: Any) -> int:
    """KV-cache bytes of the engine behind `rollout` (a colocated rollout or an engine itself);
    0 on ranks that hold no engine or for engines without a cache."""
    engine = getattr(rollout, "engine", rollout)
    fn = getattr(engine, "kv_cache_bytes", None)
    return int(fn()) if callable(fn) else 0


def memory_metrics(rollout: Any = None) -> dict[str, float]:
    """The `memory/` group of a metrics row (GB = 2**30 bytes): the process tree's RSS now and its
    peak so far (this process and its children: engine, reward workers), and the engine's KV cache."""
    sampler = run_sampler()
    now = sampler.sample()
    return {"memory/rss_gb": now / GIB, "memory/peak_rss_gb": sampler.peak / GIB,
            "memory/engine_kv_gb": engine_kv_bytes(rollout) / GIB}
