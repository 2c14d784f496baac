"""Memory sampling helpers: the process tree's RSS counts a child by what it really holds, the
sampler keeps a peak that no longer exists, unexec'd forks are not counted twice, glibc's heap
statistics move with a malloc, and the metrics row's `memory/` group."""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys
import textwrap
import time

import pytest

from nemo_r1.memory import GIB, TreeSampler, malloc_stats, memory_metrics, pss_bytes, tree_pss, tree_rss

MB = 1 << 20
ALLOC_MB = 192

# A child that reports, then on each line of stdin allocates (and touches) ALLOC_MB more, or frees all.
CHILD = textwrap.dedent(f"""\
    import sys
    held = []
    print("ready", flush=True)
    for line in sys.stdin:
        if line.strip() == "alloc":
            held.append(bytearray(b"\\x01") * ({ALLOC_MB} << 20))  # written byte by byte: resident
        else:
            held.clear()
        print("done", flush=True)
    """)


@pytest.fixture
def child():
    proc = subprocess.Popen([sys.executable, "-c", CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"

    def ask(what: str) -> None:
        proc.stdin.write(what + "\n")
        proc.stdin.flush()
        assert proc.stdout.readline().strip() == "done"

    yield proc, ask
    proc.kill()
    proc.wait()


def test_tree_rss_counts_what_a_child_allocates(child):
    proc, ask = child
    before = tree_rss()
    assert os.getpid() in before and proc.pid in before
    ask("alloc")
    after = tree_rss()
    grown = (after[proc.pid] - before[proc.pid]) / MB
    assert ALLOC_MB * 0.95 <= grown <= ALLOC_MB * 1.1, grown
    # the tree's sum moves with the child (this process may move a little meanwhile)
    assert (sum(after.values()) - sum(before.values())) / MB >= ALLOC_MB * 0.9
    # PSS of a private allocation is its RSS: the child's PSS grew by as much
    assert pss_bytes(proc.pid) / MB >= ALLOC_MB * 0.95
    assert set(tree_pss()) == set(after)


def test_sampler_keeps_a_child_peak_that_is_gone(child):
    proc, ask = child
    with TreeSampler(interval=0.02, timeline=True) as s:
        base = s.sample()
        s.mark("alloc")
        ask("alloc")
        time.sleep(0.2)
        s.mark("free")
        ask("free")
        time.sleep(0.2)
        now = s.sample()
    assert (s.peak - base) / MB >= ALLOC_MB * 0.9
    assert (s.phase_peaks["alloc"] - base) / MB >= ALLOC_MB * 0.9
    assert (s.peak - now) / MB >= ALLOC_MB * 0.8  # the child gave it back; the peak stays
    assert {label for _, label, _, _ in s.samples} >= {"alloc", "free"}
    # the floor: never below this process's own kernel-tracked peak plus its children now
    assert s.peak >= now


def test_an_unexeced_fork_is_not_counted_twice():
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: the parent's pages, copy-on-write, until it exits
        os.close(r)
        os.write(w, b"x")
        time.sleep(5)
        os._exit(0)
    try:
        os.close(w)
        assert os.read(r, 1) == b"x"
        assert pid not in tree_rss()
    finally:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        os.close(r)


def test_malloc_stats_move_with_a_malloc():
    stats = malloc_stats()
    if stats is None:
        pytest.skip("not glibc >= 2.33 (no mallinfo2)")
    libc = ctypes.CDLL(None)
    libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    n = 96 * MB
    ptr = libc.malloc(n)
    assert ptr
    try:
        held = malloc_stats()
        assert (held["in_use"] - stats["in_use"]) >= n * 0.99
    finally:
        libc.free(ptr)
    freed = malloc_stats()
    assert (held["in_use"] - freed["in_use"]) >= n * 0.99


class _Engine:
    """A stand-in for the rollout engine's one method the metrics read (the metrics are under test)."""

    def kv_cache_bytes(self) -> int:
        return 3 << 28  # 0.75 GiB


class _Rollout:
    engine = _Engine()


def test_memory_metrics_row():
    row = memory_metrics(_Rollout())
    assert set(row) == {"memory/rss_gb", "memory/peak_rss_gb", "memory/engine_kv_gb"}
    assert row["memory/engine_kv_gb"] == 0.75
    assert memory_metrics(_Engine())["memory/engine_kv_gb"] == 0.75  # an engine itself
    assert memory_metrics(object())["memory/engine_kv_gb"] == 0.0  # a rank without an engine
    rss = tree_rss()
    assert abs(row["memory/rss_gb"] - sum(rss.values()) / GIB) < 0.05
    assert row["memory/peak_rss_gb"] >= row["memory/rss_gb"] > 0
    # the peak so far never falls
    blob = bytearray(b"\x01") * (64 * MB)
    high = memory_metrics()["memory/peak_rss_gb"]
    del blob
    assert memory_metrics()["memory/peak_rss_gb"] >= high >= row["memory/peak_rss_gb"]
