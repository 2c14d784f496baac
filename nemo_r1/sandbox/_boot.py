"""Sandbox bootstrap: runs ONE untrusted Python program; executed as `python -I -S _boot.py JOB`
(`python -I _boot.py --install-dirs` prints where an interpreter's install lives, see runner.py).

Trusted code, standard library only (it starts with -S, before site-packages). Why a separate
script rather than `preexec_fn`: preexec_fn is unsafe in a threaded parent (a trainer), cannot run
code after a fork in a new PID namespace, and would make every launch pay a full fork of the
parent. The parent starts this small interpreter with posix_spawn/vfork instead.

`namespaces` mode (root): new mount + network + PID namespaces. Process tree:
    boot (root, host PID ns: enforces the wall limit)
      └─ init (root, PID 1 of the new ns: mounts, then reaps)
           └─ program (sandbox uid, rlimits, no_new_privs, cwd = empty tmpfs)
Killing init kills every process in the namespace, so double-forked or setsid()'d children of the
program cannot outlive it. /tmp, /var/tmp, /dev/shm, /run/lock are fresh size-capped tmpfs mounts
visible only inside, so nothing the program writes reaches the host's disk; the network namespace
has no interfaces (connect() gives "Network is unreachable"); /proc shows only the sandbox.

`rlimits` mode (non-root fallback): no namespaces; the program runs in its own session with
rlimits, a temp cwd, a cleared environment and a Python-level socket block. See docs/rewards.md.
"""

from __future__ import annotations

import ctypes
import marshal
import os
import resource
import signal
import sys

CLONE_NEWNS, CLONE_NEWPID, CLONE_NEWNET = 0x00020000, 0x20000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT, MS_BIND = 1, 2, 4, 8, 32, 4096
MS_REC, MS_PRIVATE, MS_NOATIME, MS_NODIRATIME, MS_RELATIME, MS_STRICTATIME = 16384, 1 << 18, 1024, 2048, 1 << 21, 1 << 24
KEPT_FLAGS = ((os.ST_NOSUID, MS_NOSUID), (os.ST_NODEV, MS_NODEV), (os.ST_NOEXEC, MS_NOEXEC),
              (os.ST_NOATIME, MS_NOATIME), (os.ST_NODIRATIME, MS_NODIRATIME), (os.ST_RELATIME, MS_RELATIME))
PR_SET_PDEATHSIG, PR_SET_NO_NEW_PRIVS = 1, 38
TMPFS_DIRS = ("/tmp", "/var/tmp", "/dev/shm", "/run/lock")
SOCKET_GUARD = (
    "import socket as _s\n"
    "def _no_net(*a, **k):\n"
    "    raise OSError(101, 'Network is unreachable (sandbox)')\n"
    "_s.socket = _s.create_connection = _s.socketpair = _s.getaddrinfo = _no_net\n"
    "del _s, _no_net\n"
)

_libc = ctypes.CDLL(None, use_errno=True)


def _check(ret: int, what: str) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _mount(src: str, target: str, fstype: str, flags: int, data: str | None) -> None:
    _check(_libc.mount(src.encode(), target.encode(), fstype.encode() if fstype else None, flags,
                       data.encode() if data else None), f"mount {target}")


def _set_limits(lim: dict, extra_nproc: int = 0) -> None:
    mb = 1024 * 1024
    resource.setrlimit(resource.RLIMIT_CPU, (lim["cpu_s"], lim["cpu_s"] + 1))
    resource.setrlimit(resource.RLIMIT_AS, (lim["memory_mb"] * mb, lim["memory_mb"] * mb))
    resource.setrlimit(resource.RLIMIT_NPROC, (lim["nproc"] + extra_nproc, lim["nproc"] + extra_nproc))
    resource.setrlimit(resource.RLIMIT_FSIZE, (lim["fsize_mb"] * mb, lim["fsize_mb"] * mb))
    resource.setrlimit(resource.RLIMIT_NOFILE, (lim["nofile"], lim["nofile"]))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _encode_status(status: int) -> dict:
    if os.WIFSIGNALED(status):
        return {"exit_code": None, "signal": os.WTERMSIG(status)}
    return {"exit_code": os.WEXITSTATUS(status), "signal": None}


def _exec_program(job: dict, path: str) -> None:
    os.execve(job["program_python"], [job["program_python"], *job["python_flags"], path], job["env"])


def _kept_flags(path: str) -> int:
    """Flags of the mount at `path` that a bind remount must repeat: the kernel refuses to clear
    locked ones (nosuid, nodev, noexec, atime) inside a container, and we never want them cleared."""
    f = os.statvfs(path).f_flag
    atime = 0 if f & (os.ST_NOATIME | os.ST_RELATIME) else MS_STRICTATIME  # else the kernel picks relatime
    return sum(ms for st, ms in KEPT_FLAGS if f & st) | atime


def _remount_all_readonly() -> None:
    """Make every host mount read-only inside the namespace, so the only writable places are the
    private tmpfs mounts made afterwards (world-writable host dirs included)."""
    points = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = line.split()[4].encode().decode("unicode_escape")  # \040 = space
            if point != "/proc" and not point.startswith("/proc/"):
                points.append(point)
    for point in points:
        if not os.path.exists(point):
            continue
        try:
            _mount("none", point, "", MS_BIND | MS_REMOUNT | MS_RDONLY | _kept_flags(point), None)
        except OSError:
            pass  # a mount we cannot remount (e.g. shadowed): its own permissions still apply


def _under(path: str, top: str) -> bool:
    return path.startswith(top.rstrip("/") + "/")


def _cover_and_expose(hide: list[str], expose: list[str], tmpfs_mb: int) -> None:
    """Cover `hide`, the private tmpfs dirs (/tmp, ...) and any dir the sandbox uid could not
    traverse on the way to `expose` with empty tmpfs mounts, then bind the `expose` dirs (the
    interpreter's install) back read-only at their own paths.

    Why: the interpreter may live in a 0700 home (pyenv in /root), or in a venv under /tmp, which
    the private /tmp would otherwise hide; re-binding just the install keeps it runnable without
    showing the rest of that home or the host's /tmp. Handles are opened before anything is
    covered, so the binds come from the host's view.
    """
    expose = sorted(p for p in expose if os.path.isdir(p))
    fds = {p: os.open(p, os.O_PATH | os.O_DIRECTORY) for p in expose}
    covers = {d: f"size={tmpfs_mb}m,mode=1777" for d in TMPFS_DIRS if os.path.isdir(d) and not os.path.islink(d)}
    for h in hide:
        if os.path.isdir(h) and not os.path.islink(h):
            covers.setdefault(h, "size=1m,mode=0755")
    for p in expose:
        parts = p.strip("/").split("/")
        for i in range(1, len(parts) + 1):
            anc = "/" + "/".join(parts[:i])
            if not os.stat(anc).st_mode & 0o001:
                covers.setdefault(anc, "size=1m,mode=0755")
                break
    tops = sorted(h for h in covers if not any(_under(h, o) for o in covers))
    for h in tops:
        _mount("tmpfs", h, "tmpfs", MS_NOSUID | MS_NODEV, covers[h])
    bound: list[str] = []
    for p in expose:  # sorted: a dir comes before the dirs inside it, which its bind already brings
        # Only strictly inside a cover: binding a cover itself (say /tmp) would undo it.
        if any(_under(p, h) for h in tops) and not any(p == b or _under(p, b) for b in bound):
            os.makedirs(p, 0o755, exist_ok=True)
            _mount(f"/proc/self/fd/{fds[p]}", p, "", MS_BIND | MS_REC, None)
            _mount("none", p, "", MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | _kept_flags(p), None)
            bound.append(p)
    for fd in fds.values():
        os.close(fd)


def _init(job: dict, status_w: int) -> None:
    """PID 1 of the sandbox namespace: private mounts, then run the program and reap everything."""
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    _remount_all_readonly()
    _mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, None)
    _cover_and_expose(job["hide"], job["expose"], job["limits"]["tmpfs_mb"])
    os.makedirs("/tmp/prog", mode=0o755)
    with open("/tmp/prog/main.py", "w", encoding="utf-8") as f:
        f.write(job["code"])
    os.chmod("/tmp/prog/main.py", 0o644)
    os.mkdir("/tmp/work", 0o700)
    os.chown("/tmp/work", job["uid"], job["gid"])
    # Setup errors of the program process travel on a close-on-exec pipe: a successful exec closes
    # it empty, so the (untrusted) program cannot fake a sandbox failure.
    err_r, err_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(err_r)
            os.chdir("/tmp/work")
            _set_limits(job["limits"])
            os.setgroups([])
            os.setresgid(job["gid"], job["gid"], job["gid"])
            os.setresuid(job["uid"], job["uid"], job["uid"])
            _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
            _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
            _exec_program(job, "/tmp/prog/main.py")
        except BaseException as e:  # noqa: BLE001
            os.write(err_w, f"{type(e).__name__}: {e}".encode())
        os._exit(125)
    os.close(err_w)
    while True:  # reap orphans until the program itself exits; then leaving kills the rest
        try:
            got, status, usage = os.wait4(-1, 0)
        except ChildProcessError:
            os._exit(0)
        if got == pid:
            res = _encode_status(status) | {"cpu_s": usage.ru_utime + usage.ru_stime,
                                            "maxrss_kb": usage.ru_maxrss}
            err = os.read(err_r, 4096).decode(errors="replace")
            if err:
                res |= {"setup_failed": True, "error": err}
            os.write(status_w, marshal.dumps(res))
            os._exit(0)


def _run_namespaces(job: dict) -> dict:
    _check(_libc.unshare(CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWPID), "unshare")
    # Without this, mounts made inside would propagate back to the host's shared mounts.
    _mount("none", "/", "", MS_REC | MS_PRIVATE, None)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        try:
            _init(job, w)
        except BaseException as e:  # noqa: BLE001
            os.write(2, f"sandbox setup failed: {e}\n".encode())
        os._exit(125)
    os.close(w)
    timed_out = _wait_with_deadline(pid, job["limits"]["wall_s"], kill=lambda: os.kill(pid, signal.SIGKILL))
    data = b""
    while chunk := os.read(r, 4096):
        data += chunk
    res = marshal.loads(data) if data else {"exit_code": None, "signal": None, "setup_failed": not timed_out}
    return res | {"timed_out": timed_out}


def _run_rlimits(job: dict) -> dict:
    """Fallback without namespaces. As root the program still runs as the slot uid (so RLIMIT_NPROC
    holds) and every process of that uid is killed afterwards; unprivileged, it runs as the caller."""
    as_root = os.geteuid() == 0
    os.chmod(job["dir"], 0o711)
    work = os.path.join(job["dir"], "work")
    os.mkdir(work, 0o700)
    path = os.path.join(job["dir"], "main.py")
    with open(path, "w", encoding="utf-8") as f:
        f.write(SOCKET_GUARD + job["code"])
    os.chmod(path, 0o644)
    extra = 0
    if as_root:
        os.chown(work, job["uid"], job["gid"])
    else:  # RLIMIT_NPROC counts all processes of this uid: the cap comes on top of what it runs now
        extra = sum(1 for p in os.listdir("/proc") if p.isdigit() and _owner(p) == os.getuid())
    err_r, err_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(err_r)
            os.setsid()
            os.chdir(work)
            _set_limits(job["limits"], extra_nproc=extra)
            if as_root:
                os.setgroups([])
                os.setresgid(job["gid"], job["gid"], job["gid"])
                os.setresuid(job["uid"], job["uid"], job["uid"])
            _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
            _libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
            _exec_program(job, path)
        except BaseException as e:  # noqa: BLE001
            os.write(err_w, f"{type(e).__name__}: {e}".encode())
        os._exit(125)
    os.close(err_w)

    def kill_all() -> None:
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        if as_root:
            _kill_uid(job["uid"], job["gid"])

    holder: dict = {}
    timed_out = _wait_with_deadline(pid, job["limits"]["wall_s"], kill=kill_all, holder=holder)
    kill_all()  # stragglers: the program's session, and as root everything its uid still runs
    res = _encode_status(holder["status"])
    usage = holder["usage"]
    err = os.read(err_r, 4096).decode(errors="replace")
    if err:
        res |= {"setup_failed": True, "error": err}
    return res | {"timed_out": timed_out, "cpu_s": usage.ru_utime + usage.ru_stime}


def _kill_uid(uid: int, gid: int) -> None:
    """kill(-1) as the sandbox uid signals exactly that uid's processes; repeat while a fork races it."""
    for _ in range(20):
        pid = os.fork()
        if pid == 0:
            try:
                os.setresgid(gid, gid, gid)
                os.setresuid(uid, uid, uid)
                os.kill(-1, signal.SIGKILL)
            except ProcessLookupError:
                os._exit(1)  # nothing left
            except BaseException:  # noqa: BLE001
                os._exit(2)
            os._exit(0)
        _, status = os.waitpid(pid, 0)
        if os.WEXITSTATUS(status) != 0:
            return


def _owner(pid: str) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("Uid:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


class _Deadline(Exception):
    pass


def _wait_with_deadline(pid: int, wall_s: float, kill, holder: dict | None = None) -> bool:
    def on_alarm(signum, frame):
        raise _Deadline

    signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, wall_s)
    timed_out = False
    try:
        _, status, usage = os.wait4(pid, 0)
    except _Deadline:
        timed_out = True
        kill()
        _, status, usage = os.wait4(pid, 0)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    if holder is not None:
        holder.update(status=status, usage=usage)
    return timed_out


def install_dirs() -> list[str]:
    """Where this interpreter's install lives (venv and base prefixes, stdlib, site-packages,
    LIBDIR): what the sandbox must bind back when its private mounts cover them. Needs `site` to
    have run (without it a venv reports its base prefix), hence `python -I _boot.py --install-dirs`."""
    import site
    import sysconfig

    paths = sysconfig.get_paths()
    return [sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix,
            *(paths[k] for k in ("stdlib", "platstdlib", "purelib", "platlib")),
            sysconfig.get_config_var("LIBDIR") or "", *site.getsitepackages()]


def main() -> None:
    if sys.argv[1] == "--install-dirs":
        import json

        print(json.dumps(install_dirs()))
        return
    with open(sys.argv[1], "rb") as f:
        job = marshal.load(f)  # written by our parent; marshal because json's import costs ~8 ms
    # Opened before the namespace mounts hide the job dir (it lives under the host's /tmp).
    status = open(os.path.join(job["dir"], "status"), "wb")  # noqa: SIM115
    try:
        res = _run_namespaces(job) if job["mode"] == "namespaces" else _run_rlimits(job)
    except BaseException as e:  # noqa: BLE001
        res = {"exit_code": None, "signal": None, "timed_out": False, "setup_failed": True, "error": str(e)}
    status.write(marshal.dumps(res))
    status.close()


if __name__ == "__main__":
    main()
