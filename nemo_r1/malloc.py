"""Keep freed memory in the process on CPU: glibc otherwise returns every large block to the OS.

glibc serves each allocation above 32 MiB (logits, activations, fp32 grads of a training step)
with a fresh `mmap` and `munmap`s it on free, so every step page-faults its whole working set in
again: the kernel zeroes each 4 KiB page (the GRPO demo took 55M minor faults, 13% of its CPU
time in the kernel). With mmap off and trimming off, freed blocks stay in the heap and the next
step reuses them. Peak RSS is unchanged (the same blocks are live at the peak); what stays
mapped after the peak is reused, not leaked. Set per process at start-up, before the big
allocations; Linux/glibc only (a no-op elsewhere). There is no Python library for `mallopt`.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os

log = logging.getLogger(__name__)

_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_applied = False


def keep_freed_memory() -> bool:
    """Turn off glibc's mmap for large blocks and heap trimming; True if it took effect.

    Skipped when NEMO_R1_MALLOC=default (to compare, or if a workload fragments badly).
    """
    global _applied
    if _applied:
        return True
    if os.environ.get("NEMO_R1_MALLOC", "") == "default":
        return False
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl, macOS: no mallopt
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    ok = mallopt(_M_MMAP_MAX, 0) == 1 and mallopt(_M_TRIM_THRESHOLD, -1) == 1  # -1: SIZE_MAX, never trim
    _applied = ok
    log.debug("glibc malloc keeps freed memory: %s", ok)
    return ok
