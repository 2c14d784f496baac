"""Run untrusted Python programs: one fresh sandboxed process each, bounded parallelism.

The parent side of `_boot.py`. One thread drives everything (a poll loop over pidfds), so it is
safe to call from a trainer with torch/vLLM threads. Output goes to files, not pipes: the
program's RLIMIT_FSIZE then caps a flood of output for free and no reader threads are needed;
only the first `output_bytes` are read back.
"""

from __future__ import annotations

import functools
import json
import logging
import marshal
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from nemo_r1.sandbox._boot import install_dirs

log = logging.getLogger(__name__)
BOOT = Path(__file__).with_name("_boot.py")
ISOLATIONS = ("auto", "namespaces", "rlimits")


@dataclass(frozen=True)
class SandboxLimits:
    """Per-program limits. The defaults suit short test programs (MBPP-sized functions)."""

    cpu_s: int = 5
    """RLIMIT_CPU seconds (SIGXCPU, then SIGKILL a second later)."""
    wall_s: float = 10.0
    """Wall-clock limit; the whole process tree is killed when it passes."""
    memory_mb: int = 1024
    """RLIMIT_AS (address space) in MiB."""
    nproc: int = 32
    """RLIMIT_NPROC: processes + threads of the sandbox uid (one uid per parallel slot)."""
    fsize_mb: int = 16
    """RLIMIT_FSIZE: largest file the program may write, stdout/stderr included."""
    nofile: int = 64
    """RLIMIT_NOFILE: open file descriptors."""
    tmpfs_mb: int = 64
    """Size of each private tmpfs (cwd=/tmp/work, /var/tmp, /dev/shm) in namespaces mode."""
    output_bytes: int = 1 << 20
    """stdout/stderr bytes read back (each); the rest is dropped."""
    max_parallel: int | None = None
    """Programs running at once; None = CPU count."""
    uid_base: int = 2_100_000_000
    """Namespaces mode runs slot i as uid/gid uid_base + i: far from real users, so RLIMIT_NPROC
    (counted per uid; not enforced for root) caps each program alone and no host file is theirs."""
    python: str | None = None
    """Interpreter for the programs; None = this one. Wherever it lives (/tmp, /home, /root, a
    read-only mount), its install is bound back read-only where the sandbox's private mounts cover it."""
    hide_paths: tuple[str, ...] = ("/root", "/home")
    """Covered with an empty tmpfs in namespaces mode (the Python install is re-exposed read-only)."""
    isolation: str = "auto"
    """`namespaces` (root: netns+mountns+pidns, setuid), `rlimits` (fallback), or `auto`."""

    def __post_init__(self) -> None:
        if self.isolation not in ISOLATIONS:
            raise ValueError(f"isolation={self.isolation!r} is not one of {list(ISOLATIONS)}")
        for name in ("cpu_s", "memory_mb", "nproc", "fsize_mb", "nofile", "tmpfs_mb", "output_bytes"):
            if getattr(self, name) < 1:
                raise ValueError(f"SandboxLimits.{name} must be >= 1, got {getattr(self, name)}")
        if self.wall_s <= 0:
            raise ValueError(f"SandboxLimits.wall_s must be > 0, got {self.wall_s}")


@dataclass(frozen=True)
class Program:
    code: str
    stdin: str = ""


@dataclass
class RunResult:
    exit_code: int | None
    """None when the program died from a signal (see `signal`)."""
    signal: int | None
    timed_out: bool
    stdout: str
    stderr: str
    wall_s: float
    cpu_s: float | None = None
    setup_failed: bool = False
    """The sandbox itself could not start the program (not the program's fault)."""
    extra: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out and not self.setup_failed


def _program_command(python: str | None) -> tuple[str, list[str], dict[str, str]]:
    """Interpreter, flags and environment for the programs: no secrets from the parent, a fixed hash
    seed (set iteration order then matches between reference and candidate runs), one math thread.

    For our own interpreter, `-S` with PYTHONPATH = its site-packages skips site's .pth processing
    (about half of Python's ~25 ms start-up, paid once per program) while numpy etc. stay importable.
    """
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/tmp/work", "LANG": "C.UTF-8",
           "PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1", "PYTHONSAFEPATH": "1",
           "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    if python is None:
        import site

        env["PYTHONPATH"] = os.pathsep.join(site.getsitepackages())
        return _exec_path(sys.executable), ["-S"], env
    return _exec_path(python), ["-s"], env


def _exec_path(python: str) -> str:
    """The interpreter path with its directory resolved but its name kept: a symlinked dir on the way
    (say /home/u/proj -> /data/proj) may be hidden in the sandbox, while a venv's `bin/python` link
    must stay a link for Python to find its pyvenv.cfg."""
    python = os.path.abspath(python)
    return os.path.join(os.path.realpath(os.path.dirname(python)), os.path.basename(python))


@functools.lru_cache(maxsize=16)
def _python_dirs(python: str | None) -> tuple[str, ...]:
    """Directories the interpreter needs, as real paths: every directory on its symlink chain, the
    venv and base prefixes, the stdlib, site-packages and LIBDIR. The sandbox binds those of them
    that its private mounts cover (/tmp, /root, /home) back in, read-only.

    Another interpreter is asked once (it is the operator's configuration, run here unsandboxed):
    only it knows its base install (a `--copies` venv, a relocated stdlib)."""
    if python is None:
        exe, dirs = sys.executable, install_dirs()
    else:
        exe = python
        try:
            out = subprocess.run([python, "-I", str(BOOT), "--install-dirs"], capture_output=True, text=True,
                                 timeout=60, env={}, check=True).stdout
            dirs = json.loads(out)
        except (OSError, subprocess.SubprocessError, ValueError) as e:
            log.warning("sandbox: could not ask %s for its install dirs (%s); using its path only", python, e)
            dirs = [os.path.dirname(os.path.dirname(os.path.abspath(python)))]
    link = os.path.abspath(exe)
    for _ in range(40):  # each hop of the symlink chain (venv bin/python -> base bin/python3.11)
        dirs.append(os.path.dirname(link))
        if not os.path.islink(link):
            break
        link = os.path.join(os.path.dirname(link), os.readlink(link))
    dirs.append(os.path.dirname(os.path.dirname(os.path.realpath(exe))))
    return tuple(sorted({os.path.realpath(d) for d in dirs if d}))


_mode_lock = threading.Lock()
_resolved_mode: str | None = None


def isolation_mode(limits: SandboxLimits | None = None) -> str:
    """The isolation actually used: `auto` probes namespaces once (root only), else `rlimits`."""
    global _resolved_mode
    limits = limits or SandboxLimits()
    if limits.isolation != "auto":
        return limits.isolation
    with _mode_lock:
        if _resolved_mode is None:
            _resolved_mode = "rlimits"
            if os.geteuid() == 0:
                probe = _run_all([Program("print(6 * 7)")], limits, "namespaces")[0]
                if probe.ok and probe.stdout.strip() == "42":
                    _resolved_mode = "namespaces"
                else:
                    log.warning("sandbox: namespaces unavailable (%s); falling back to rlimits-only "
                                "isolation (no network/mount isolation, see docs/rewards.md)",
                                probe.stderr.strip()[-300:] or probe.extra)
            else:
                log.warning("sandbox: not root, so no namespaces/setuid; using rlimits-only isolation "
                            "(see docs/rewards.md for what that does not stop)")
        return _resolved_mode


def run_programs(programs: list[Program], limits: SandboxLimits | None = None) -> list[RunResult]:
    """Run each program in its own sandbox, at most `limits.max_parallel` at once; results in order."""
    limits = limits or SandboxLimits()
    return _run_all(programs, limits, isolation_mode(limits))


def run_program(code: str, stdin: str = "", limits: SandboxLimits | None = None) -> RunResult:
    return run_programs([Program(code, stdin)], limits)[0]


class _SlotPool:
    """Slot numbers (hence sandbox uids) unique across concurrent `run_programs` calls in this process,
    so two callers never share a uid's RLIMIT_NPROC budget."""

    def __init__(self) -> None:
        self._free = set(range(4096))
        self._lock = threading.Lock()

    def take(self, n: int) -> list[int]:
        with self._lock:
            got = sorted(self._free)[:n]
            if not got:
                raise RuntimeError("sandbox: no free slots (more than 4096 programs running at once)")
            self._free.difference_update(got)
            return got

    def give(self, slots: list[int]) -> None:
        with self._lock:
            self._free.update(slots)


_SLOTS = _SlotPool()


@dataclass
class _Running:
    index: int
    slot: int
    proc: subprocess.Popen
    pidfd: int
    dir: Path
    start: float
    files: list


def _run_all(programs: list[Program], limits: SandboxLimits, mode: str) -> list[RunResult]:
    parallel = limits.max_parallel or os.cpu_count() or 1
    results: list[RunResult | None] = [None] * len(programs)
    free_slots = _SLOTS.take(parallel)[::-1]
    queue = list(range(len(programs)))[::-1]
    running: dict[int, _Running] = {}  # pidfd -> job
    poller = select.poll()
    try:
        while queue or running:
            while queue and free_slots:
                job = _start(queue.pop(), programs, free_slots.pop(), limits, mode)
                running[job.pidfd] = job
                poller.register(job.pidfd, select.POLLIN)
            # Backstop: boot enforces wall_s itself; if boot hangs, kill it (init then dies by PDEATHSIG).
            now = time.monotonic()
            backstop = min(j.start + limits.wall_s + 10.0 for j in running.values())
            events = poller.poll(max(0.0, backstop - now) * 1000)
            ready = [fd for fd, _ in events]
            if not ready:
                for j in running.values():
                    if time.monotonic() > j.start + limits.wall_s + 10.0:
                        j.proc.kill()
                continue
            for fd in ready:
                job = running.pop(fd)
                poller.unregister(fd)
                results[job.index] = _finish(job, limits)
                free_slots.append(job.slot)
    finally:
        for job in running.values():
            job.proc.kill()
            _finish(job, limits)
            free_slots.append(job.slot)
        _SLOTS.give(free_slots)
    return results  # type: ignore[return-value]


def _start(index: int, programs: list[Program], slot: int, limits: SandboxLimits, mode: str) -> _Running:
    prog = programs[index]
    d = Path(tempfile.mkdtemp(prefix="nemo_r1_sbx_"))  # 0700, owned by us
    limits_d = asdict(limits) | {"wall_s": float(limits.wall_s), "hide_paths": list(limits.hide_paths)}
    python, flags, env = _program_command(limits.python)
    job = {"code": prog.code, "mode": mode, "program_python": python, "python_flags": flags, "env": env, "dir": str(d),
           "hide": list(limits.hide_paths), "expose": list(_python_dirs(limits.python)) if mode == "namespaces" else [],
           "uid": limits.uid_base + slot, "gid": limits.uid_base + slot, "limits": limits_d}
    (d / "job").write_bytes(marshal.dumps(job))
    (d / "stdin").write_text(prog.stdin, encoding="utf-8")
    files = [open(d / "stdin", "rb"), open(d / "stdout", "wb"), open(d / "stderr", "wb")]  # noqa: SIM115
    proc = subprocess.Popen([sys.executable, "-I", "-S", str(BOOT), str(d / "job")],
                            stdin=files[0], stdout=files[1], stderr=files[2], env={},
                            close_fds=True, start_new_session=True)
    return _Running(index, slot, proc, os.pidfd_open(proc.pid), d, time.monotonic(), files)


def _read_capped(path: Path, cap: int) -> str:
    try:
        with open(path, "rb") as f:
            return f.read(cap).decode("utf-8", errors="replace")
    except OSError:
        return ""


def _finish(job: _Running, limits: SandboxLimits) -> RunResult:
    job.proc.wait()
    wall = time.monotonic() - job.start
    os.close(job.pidfd)
    for f in job.files:
        f.close()
    try:
        status = marshal.loads((job.dir / "status").read_bytes())
    except (OSError, ValueError):
        status = {"exit_code": None, "signal": signal.SIGKILL, "timed_out": True, "error": "boot killed"}
    res = RunResult(exit_code=status.get("exit_code"), signal=status.get("signal"),
                    timed_out=bool(status.get("timed_out")),
                    stdout=_read_capped(job.dir / "stdout", limits.output_bytes),
                    stderr=_read_capped(job.dir / "stderr", limits.output_bytes),
                    wall_s=wall, cpu_s=status.get("cpu_s"), setup_failed=bool(status.get("setup_failed")),
                    extra={k: v for k, v in status.items() if k in ("error", "maxrss_kb")})
    shutil.rmtree(job.dir, ignore_errors=True)
    return res
