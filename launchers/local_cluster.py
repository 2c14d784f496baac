"""A real single-host Slurm cluster (slurmctld, N emulated slurmd nodes, slurmdbd on MariaDB).

Why: the launcher must be tested against real Slurm behaviour (sbatch, srun task layout, sacct
states, signals before the time limit, requeue), which no mock reproduces. Debian's Slurm runs as
root without systemd; every daemon here gets its own config, sockets, ports and state under one
temp dir, so the cluster never touches a system-wide Slurm or munge and several can coexist.
`tools/install_slurm.sh` installs the packages; `tools/slurm_local.py` starts/stops one by hand.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

DAEMONS = ("munged", "mariadbd", "mariadb-install-db", "slurmdbd", "slurmctld", "slurmd")
INSTALL_HINT = "run `sudo tools/install_slurm.sh` (Debian/Ubuntu: slurm-wlm slurmdbd munge mariadb-server)"


class SlurmNotInstalled(RuntimeError):
    """The Slurm/munge/MariaDB binaries are missing."""


class ClusterStartError(RuntimeError):
    """A daemon did not come up; the message carries the tail of its log."""


def missing_binaries() -> list[str]:
    """Daemon and client binaries that are not installed (empty when the cluster can start)."""
    need = (*DAEMONS, "sbatch", "srun", "sacct", "scontrol", "sinfo", "mariadb")
    return [b for b in need if shutil.which(b) is None and not Path("/usr/sbin", b).exists()]


def _free_ports(n: int) -> list[int]:
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


def _bin(name: str) -> str:
    return shutil.which(name) or str(Path("/usr/sbin", name))


@dataclass
class LocalSlurm:
    """Start with `with LocalSlurm() as cluster:`; `cluster.env` holds SLURM_CONF for clients."""

    nodes: int = 2
    cpus_per_node: int = 2
    mem_mb_per_node: int = 4000
    root: Path | None = None
    """Runtime dir; a fresh /tmp dir (world-traversable, as munge and mysql users need) if None."""
    partition: str = "debug"
    _pids: list[tuple[str, Path | subprocess.Popen]] = field(default_factory=list, repr=False)
    _owns_root: bool = field(default=False, repr=False)

    @property
    def conf(self) -> Path:
        assert self.root is not None
        return self.root / "etc" / "slurm.conf"

    @property
    def env(self) -> dict[str, str]:
        """Variables a client (sbatch, sacct, submitit) needs to reach this cluster."""
        return {"SLURM_CONF": str(self.conf)}

    @property
    def node_names(self) -> list[str]:
        return [f"n{i + 1}" for i in range(self.nodes)]

    # ------------------------------------------------------------------ start / stop

    @classmethod
    def attach(cls, root: str | Path) -> LocalSlurm:
        """A handle on a cluster started by another process (tools/slurm_local.py stop), from the
        pid files under its runtime dir."""
        d = Path(root)
        if not (d / "etc" / "slurm.conf").exists():
            raise FileNotFoundError(f"{d} is not a LocalSlurm runtime dir (no etc/slurm.conf)")
        c = cls(root=d, nodes=len(list((d / "spool").glob("n*"))) or 2)
        c._pids = [("munged", d / "munge" / "munged.pid"), ("mariadbd", d / "mysql" / "mysqld.pid"),
                   ("slurmdbd", d / "run" / "slurmdbd.pid"), ("slurmctld", d / "run" / "slurmctld.pid")]
        c._pids += [(f"slurmd-{p.stem.split('-', 1)[1]}", p) for p in sorted((d / "run").glob("slurmd-*.pid"))]
        return c

    def start(self, timeout_s: float = 90) -> LocalSlurm:
        missing = missing_binaries()
        if missing:
            raise SlurmNotInstalled(f"Slurm test cluster needs {', '.join(missing)}: {INSTALL_HINT}")
        if os.geteuid() != 0:
            raise ClusterStartError("the local Slurm cluster runs its daemons as root; run as root")
        if self.root is None:
            self.root = Path(tempfile.mkdtemp(prefix="nemo-r1-slurm-"))
            self._owns_root = True
        d = self.root
        d.chmod(0o755)
        for sub in ("etc", "state", "spool", "log", "run", "munge", "mysql"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        try:
            self._write_configs()
            self._start_munge()
            self._start_mariadb(timeout_s)
            self._daemon("slurmdbd", [_bin("slurmdbd")], d / "run" / "slurmdbd.pid",
                         env={"MYSQL_UNIX_PORT": str(d / "mysql" / "mysqld.sock")})
            self._wait_port(self._ports["dbd"], "slurmdbd", d / "log" / "slurmdbd.log", timeout_s)
            self._daemon("slurmctld", [_bin("slurmctld")], d / "run" / "slurmctld.pid")
            self._wait_port(self._ports["ctld"], "slurmctld", d / "log" / "slurmctld.log", timeout_s)
            for name in self.node_names:
                self._daemon(f"slurmd-{name}", [_bin("slurmd"), "-N", name], d / "run" / f"slurmd-{name}.pid")
            self._wait_nodes_idle(timeout_s)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Kill every daemon this object started, by the PID it recorded (never by name).

        Slurm daemons go first, all at once (their state is thrown away, so order among them does
        not matter and waiting ~2 s each adds up), then MariaDB, then munged which they all use.
        """
        self._cancel_jobs()
        slurm = [w for n, w in self._pids if n.startswith("slurm") and isinstance(w, Path)]
        _terminate([p for p in map(_read_pid, slurm) if p is not None])
        _terminate(self._stray_stepds(), timeout_s=2)  # slurmstepd ignores SIGTERM: SIGKILL follows
        for name, where in reversed(self._pids):
            if isinstance(where, subprocess.Popen):  # a foreground child (mariadbd): reap it
                if where.poll() is None:
                    where.terminate()
                    try:
                        where.wait(timeout=20)
                    except subprocess.TimeoutExpired:
                        where.kill()
                        where.wait()
            elif not name.startswith("slurm"):
                pid = _read_pid(where)
                if pid is not None:
                    _terminate([pid])
        self._pids.clear()
        if self._owns_root and self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)

    def _cancel_jobs(self, timeout_s: float = 30) -> None:
        """Jobs left by a failed test would outlive slurmd (slurmstepd runs them): cancel and wait."""
        if not any(n == "slurmctld" for n, _ in self._pids) or not self.conf.exists():
            return
        env = {**os.environ, **self.env}

        def queued() -> list[str]:
            r = subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True, env=env, timeout=30)
            return r.stdout.split() if r.returncode == 0 else []

        try:
            ids = queued()
            if ids:
                subprocess.run(["scancel", *ids], capture_output=True, env=env, timeout=30)
            deadline = time.monotonic() + timeout_s
            while ids and time.monotonic() < deadline:
                time.sleep(0.5)
                ids = queued()
        except (OSError, subprocess.TimeoutExpired):
            pass

    def _stray_stepds(self) -> list[int]:
        """slurmstepd processes of this cluster that outlived slurmd (a job step whose node went
        away). They are recognised by their working directory inside this cluster's runtime dir,
        which no other process uses."""
        if self.root is None:
            return []
        root, found = str(self.root.resolve()), []
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit() or int(proc.name) == os.getpid():
                continue
            try:
                cwd = os.readlink(proc / "cwd").removesuffix(" (deleted)")
            except OSError:
                continue
            if cwd == root or cwd.startswith(root + "/"):
                found.append(int(proc.name))
        return found

    def __enter__(self) -> LocalSlurm:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def log_tail(self, name: str, lines: int = 30) -> str:
        """Last lines of a daemon log (slurmctld, slurmdbd, slurmd-n1, ...) for error messages."""
        assert self.root is not None
        p = self.root / "log" / f"{name}.log"
        if not p.exists():
            return f"(no {p})"
        return "\n".join(p.read_text(errors="replace").splitlines()[-lines:])

    # ------------------------------------------------------------------ pieces

    def _write_configs(self) -> None:
        d = self.root
        assert d is not None
        ctld, dbd, *node_ports = _free_ports(2 + self.nodes)
        self._ports = {"ctld": ctld, "dbd": dbd}
        auth = f"AuthType=auth/munge\nAuthInfo=socket={d}/munge/munge.socket"
        # cred_expire also sets how long a requeued job waits before it may start again (default 120 s)
        ctld_auth = auth + ",cred_expire=10"
        host = socket.gethostname()
        nodes = "\n".join(
            f"NodeName={n} NodeHostname={host} NodeAddr=127.0.0.1 Port={p} CPUs={self.cpus_per_node} "
            f"RealMemory={self.mem_mb_per_node} State=UNKNOWN" for n, p in zip(self.node_names, node_ports, strict=True))
        self.conf.write_text(f"""\
ClusterName=nemor1test
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
SlurmctldPort={ctld}
{ctld_auth}
StateSaveLocation={d}/state
SlurmdSpoolDir={d}/spool/%n
SlurmctldPidFile={d}/run/slurmctld.pid
SlurmdPidFile={d}/run/slurmd-%n.pid
SlurmctldLogFile={d}/log/slurmctld.log
SlurmdLogFile={d}/log/slurmd-%n.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SwitchType=switch/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2,bf_interval=2
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort={dbd}
AccountingStoragePass={d}/munge/munge.socket
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MailProg=/bin/true
ReturnToService=2
SlurmctldTimeout=30
SlurmdTimeout=30
SlurmdParameters=config_overrides
InactiveLimit=0
MinJobAge=300
KillWait=5
Waittime=0
{nodes}
PartitionName={self.partition} Nodes={",".join(self.node_names)} Default=YES MaxTime=INFINITE State=UP
""")
        dbd_conf = self.conf.parent / "slurmdbd.conf"
        dbd_conf.write_text(f"""\
DbdHost=localhost
DbdPort={dbd}
SlurmUser=root
{auth}
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=root
StorageLoc=slurm_acct_db
PidFile={d}/run/slurmdbd.pid
LogFile={d}/log/slurmdbd.log
""")
        dbd_conf.chmod(0o600)

    def _start_munge(self) -> None:
        d = self.root
        assert d is not None
        shutil.chown(d / "munge", "munge", "munge")
        (d / "munge").chmod(0o755)
        pid = d / "munge" / "munged.pid"
        self._run(["runuser", "-u", "munge", "--", _bin("munged"), f"--socket={d}/munge/munge.socket",
                   f"--pid-file={pid}", f"--log-file={d}/munge/munged.log", f"--seed-file={d}/munge/munged.seed"],
                  "munged")
        self._pids.append(("munged", pid))

    def _start_mariadb(self, timeout_s: float) -> None:
        d = self.root
        assert d is not None
        m = d / "mysql"
        shutil.chown(m, "mysql", "mysql")
        self._run([_bin("mariadb-install-db"), "--user=mysql", f"--datadir={m}/data",
                   "--auth-root-authentication-method=socket", "--skip-test-db"], "mariadb-install-db")
        sock = m / "mysqld.sock"
        log = open(m / "stdout.log", "wb")
        p = subprocess.Popen([_bin("mariadbd"), "--no-defaults", "--user=mysql", f"--datadir={m}/data",
                              f"--socket={sock}", f"--pid-file={m}/mysqld.pid", "--skip-networking",
                              f"--log-error={m}/err.log", "--innodb-buffer-pool-size=16M"],
                             stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self._pids.append(("mariadbd", p))
        deadline = time.monotonic() + timeout_s
        while True:
            r = subprocess.run(["mariadb", f"--socket={sock}", "-e", "create database if not exists slurm_acct_db"],
                               capture_output=True, text=True)
            if r.returncode == 0:
                return
            if p.poll() is not None or time.monotonic() > deadline:
                err = (m / "err.log").read_text(errors="replace")[-2000:] if (m / "err.log").exists() else ""
                raise ClusterStartError(f"MariaDB did not start: {r.stderr.strip()}\n{err}")
            time.sleep(0.5)

    def _daemon(self, name: str, cmd: list[str], pidfile: Path, env: dict[str, str] | None = None) -> None:
        """Start a self-daemonizing Slurm daemon and record its pid file for stop()."""
        full_env = {**os.environ, "SLURM_CONF": str(self.conf), **(env or {})}
        self._pids.append((name, pidfile))
        self._run(cmd, name, env=full_env)

    def _run(self, cmd: list[str], name: str, env: dict[str, str] | None = None) -> None:
        r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
        if r.returncode != 0:
            raise ClusterStartError(f"{name} failed to start (exit {r.returncode}): {cmd}\n{r.stdout}{r.stderr}")

    def _wait_port(self, port: int, name: str, log: Path, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.2)
        raise ClusterStartError(f"{name} did not listen on port {port} within {timeout_s:.0f}s; "
                                f"log {log}:\n{self.log_tail(log.stem)}")

    def _wait_nodes_idle(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        states = ""
        while time.monotonic() < deadline:
            r = subprocess.run(["sinfo", "-h", "-N", "-o", "%N %t"], capture_output=True, text=True,
                               env={**os.environ, **self.env})
            states = r.stdout.strip()
            lines = [ln.split() for ln in states.splitlines() if ln.strip()]
            if len(lines) == self.nodes and all(s in ("idle", "mix", "alloc") for _, s in lines):
                return
            time.sleep(0.5)
        raise ClusterStartError(f"nodes not idle within {timeout_s:.0f}s (sinfo: {states!r}); slurmd log:\n"
                                + self.log_tail(f"slurmd-{self.node_names[0]}"))


def _read_pid(pidfile: Path) -> int | None:
    try:
        return int(pidfile.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _terminate(pids: list[int], timeout_s: float = 15) -> None:
    """SIGTERM, wait, then SIGKILL what is left."""
    live = []
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
            live.append(pid)
        except ProcessLookupError:
            pass
    for pid in live:
        if not _wait_gone(pid, timeout_s):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            _wait_gone(pid, 5)


def _wait_gone(pid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        try:  # a zombie (dead, not yet reaped by its parent) counts as gone
            if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                return True
        except (OSError, IndexError):
            return True
        time.sleep(0.1)
    return False
