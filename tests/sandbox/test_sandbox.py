"""Sandbox: ordinary programs run; hostile ones fail, stay inside their limits and change nothing."""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import venv
from dataclasses import replace
from pathlib import Path

import pytest

from nemo_r1.sandbox import Program, SandboxLimits, isolation_mode, run_program, run_programs

REPO = Path(__file__).resolve().parents[2]
FAST = SandboxLimits(cpu_s=1, wall_s=10, nproc=16, memory_mb=512, max_parallel=2)
_COVERED = ("/tmp", "/var/tmp", "/dev/shm", "/run/lock", *SandboxLimits().hide_paths)
CHECKOUT_DENIED = ({"denied 2", "denied 13"} if any(REPO.is_relative_to(d) for d in _COVERED) else {"denied 30"})
"""How a write into this checkout fails inside: EROFS where the host shows read-only; ENOENT (or EACCES
in the bare directories that lead to a bound interpreter) where the checkout lives under a directory
the sandbox covers with an empty tmpfs, so that it is not there at all."""
SLACK_S = 8.0
"""Start-up allowance on top of a wall limit (process start, namespace setup, reaping)."""
SLOT_UIDS = range(FAST.uid_base, FAST.uid_base + 64)

needs_namespaces = pytest.mark.skipif(
    os.geteuid() != 0, reason="namespaces isolation needs root (the fallback is tested below)")


def _sandbox_processes() -> list[int]:
    """PIDs of live processes owned by a sandbox slot uid (should always be none after a run)."""
    pids = []
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            with open(f"/proc/{p}/status") as f:
                uid = next(int(line.split()[1]) for line in f if line.startswith("Uid:"))
        except (OSError, StopIteration):
            continue
        if uid in SLOT_UIDS:
            pids.append(int(p))
    return pids


def _host_state() -> tuple:
    """Host mounts, and /tmp, /var/tmp, /dev/shm entries owned by a sandbox uid (other processes
    create files there too, so only sandbox-owned ones are compared)."""
    mounts = Path("/proc/self/mountinfo").read_text()
    owned = []
    for d in ("/tmp", "/var/tmp", "/dev/shm"):
        for name in os.listdir(d):
            try:
                if os.lstat(os.path.join(d, name)).st_uid in SLOT_UIDS:
                    owned.append(os.path.join(d, name))
            except FileNotFoundError:
                continue
    return mounts, owned


@pytest.fixture
def unchanged():
    """Asserts the host looks the same after the test: mounts, /tmp entries, no sandbox processes."""
    before = _host_state()
    yield
    deadline = time.monotonic() + 2
    while _sandbox_processes() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _sandbox_processes() == []
    assert _host_state() == before
    assert not [p for p in os.listdir("/tmp") if p.startswith("nemo_r1_sbx_")], "job dirs left behind"


def test_runs_programs_in_order_with_stdin_and_bounded_parallelism(unchanged):
    code = "import time, sys; t = time.time(); time.sleep(0.3); print(input(), t)"
    t0 = time.monotonic()
    res = run_programs([Program(code, stdin=f"{i}\n") for i in range(6)], FAST)
    wall = time.monotonic() - t0
    assert [r.stdout.split()[0] for r in res] == [str(i) for i in range(6)]
    assert all(r.ok for r in res)
    starts = sorted(float(r.stdout.split()[1]) for r in res)
    # 2 slots: at most two programs started within any 0.25 s window (each sleeps 0.3 s)
    assert all(b - a > 0.25 for a, b in zip(starts, starts[2:], strict=False))
    assert wall >= 0.9


@needs_namespaces
def test_isolation_is_namespaces_as_root():
    assert isolation_mode(FAST) == "namespaces"


@needs_namespaces
def test_program_sees_empty_cwd_clean_env_and_own_uid(unchanged, monkeypatch):
    monkeypatch.setenv("NEMO_R1_TEST_SECRET", "hunter2-secret")
    code = ("import os, glob\nprint(os.getcwd(), os.listdir('.'), os.getuid())\nprint(dict(os.environ))\n"
            "for p in glob.glob('/proc/*/environ'):\n"
            "    try: print(open(p, 'rb').read())\n"
            "    except OSError as e: print('denied', p)\n"
            "print(sorted(os.listdir('/root')))")
    r = run_program(code, limits=FAST)
    assert r.ok, r.stderr
    first = r.stdout.splitlines()[0].split(" ", 2)
    assert first[0] == "/tmp/work" and first[1] == "[]" and int(first[2]) in SLOT_UIDS
    assert "hunter2" not in r.stdout + r.stderr
    assert "'.pyenv'" in r.stdout or "[]" in r.stdout.splitlines()[-1]  # /root is an empty cover (+ the Python install)


@needs_namespaces
def test_infinite_loop_is_killed_by_cpu_limit(unchanged):
    r = run_program("while True:\n    pass\n", limits=FAST)
    assert not r.ok and (r.signal is not None or r.timed_out)  # SIGXCPU/SIGKILL from RLIMIT_CPU
    assert r.cpu_s is None or r.cpu_s < FAST.cpu_s + 1.5  # (or the wall limit, if it got less than a full CPU)


@needs_namespaces
def test_sleeping_program_hits_wall_limit(unchanged):
    lim = SandboxLimits(wall_s=1.5, max_parallel=1)
    t0 = time.monotonic()
    r = run_program("import time\ntime.sleep(60)\n", limits=lim)
    assert r.timed_out and not r.ok
    assert 1.5 <= time.monotonic() - t0 < lim.wall_s + SLACK_S


@needs_namespaces
def test_memory_bomb_fails_with_memory_error(unchanged):
    # Zeroing ~500 MiB of pages costs CPU time: a CPU limit above that keeps this about memory.
    r = run_program("x = []\nwhile True:\n    x.append(bytearray(50 * 1024 * 1024))\n", limits=replace(FAST, cpu_s=5))
    assert not r.ok and "MemoryError" in r.stderr
    assert r.extra["maxrss_kb"] < FAST.memory_mb * 1024


@needs_namespaces
def test_fork_bomb_is_capped_and_leaves_no_process(unchanged):
    # NPROC caps the uid at 8 processes before the bomb runs: verify the cap first, then the bomb.
    lim = SandboxLimits(cpu_s=2, wall_s=3, nproc=8, memory_mb=256, max_parallel=1)  # the bomb ends at wall_s
    probe = run_program("import os, time\nn = 0\nfor _ in range(50):\n    try:\n        pid = os.fork()\n"
                        "    except OSError:\n        break\n    if pid == 0:\n        time.sleep(30)\n"
                        "        os._exit(0)\n    n += 1\nprint(n)\n", limits=lim)
    assert probe.ok and 0 < int(probe.stdout) < 8
    t0 = time.monotonic()
    r = run_program("import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n", limits=lim)
    assert not r.ok and time.monotonic() - t0 < lim.wall_s + SLACK_S
    assert _sandbox_processes() == []


@needs_namespaces
def test_daemonized_child_does_not_outlive_the_program(unchanged):
    code = ("import os, time\nif os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n        time.sleep(60)\n"
            "    os._exit(0)\nprint('parent done')\n")
    r = run_program(code, limits=FAST)
    assert r.ok and "parent done" in r.stdout
    assert _sandbox_processes() == []


@needs_namespaces
def test_cannot_write_or_delete_outside_its_dir(unchanged):
    victim_dir = REPO / "outputs" / f".sandbox_victim_{os.getpid()}"
    victim_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(victim_dir, 0o777)  # even a world-writable host dir must stay untouched
    victim = victim_dir / "victim.txt"
    victim.write_text("precious")
    os.chmod(victim, 0o666)
    digest = hashlib.sha256(victim.read_bytes()).hexdigest()
    try:
        code = (f"import os, shutil\nfor f in [lambda: open({str(victim)!r}, 'w').write('x'),\n"
                f"          lambda: os.remove({str(victim)!r}),\n"
                f"          lambda: open({str(victim_dir / 'new.txt')!r}, 'w').write('x'),\n"
                f"          lambda: shutil.rmtree({str(REPO / 'nemo_r1')!r}),\n"
                f"          lambda: open('/etc/passwd', 'a').write('x'),\n"
                f"          lambda: open('/tmp/work/ok.txt', 'w').write('mine')]:\n"
                f"    try:\n        f()\n        print('ok')\n    except OSError as e:\n        print('denied', e.errno)\n")
        r = run_program(code, limits=FAST)
        assert r.ok, r.stderr
        lines = r.stdout.split("\n")[:6]
        assert all(line in CHECKOUT_DENIED for line in lines[:4]), lines  # even world-writable host dirs
        assert lines[4] in ("denied 13", "denied 30") and lines[5] == "ok"  # only its own tmpfs is writable
        assert hashlib.sha256(victim.read_bytes()).hexdigest() == digest
        assert sorted(os.listdir(victim_dir)) == ["victim.txt"]
        assert (REPO / "nemo_r1" / "__init__.py").exists()
    finally:
        victim.unlink()
        victim_dir.rmdir()


@needs_namespaces
def test_no_network_even_to_localhost(unchanged):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.settimeout(1.5)
    port = server.getsockname()[1]
    accepted = []
    t = threading.Thread(target=lambda: accepted.append(_accept(server)))
    t.start()
    code = (f"import socket\nfor addr in [('127.0.0.1', {port}), ('8.8.8.8', 53)]:\n    try:\n"
            f"        socket.create_connection(addr, timeout=2)\n        print('connected')\n"
            f"    except OSError as e:\n        print('refused', e)\n")
    r = run_program(code, limits=FAST)
    t.join()
    server.close()
    assert "connected" not in r.stdout and r.stdout.count("refused") == 2
    assert "unreachable" in r.stdout.lower()
    assert accepted == [None]


def _accept(server: socket.socket):
    try:
        conn, _ = server.accept()
        conn.close()
        return "connection"
    except TimeoutError:
        return None


@needs_namespaces
def test_huge_output_is_capped(unchanged):
    lim = SandboxLimits(cpu_s=5, wall_s=10, fsize_mb=2, output_bytes=4096, max_parallel=1)
    r = run_program("while True:\n    print('x' * 10000)\n", limits=lim)
    assert not r.ok and not r.timed_out and len(r.stdout) == 4096  # stopped by RLIMIT_FSIZE, not the clock


@needs_namespaces
def test_program_cannot_fake_a_sandbox_failure(unchanged):
    r = run_program("import sys\nsys.stderr.write('sandbox setup failed: x')\nsys.exit(125)\n", limits=FAST)
    assert r.exit_code == 125 and not r.setup_failed


def test_rlimits_fallback_still_limits_cpu_memory_and_output(unchanged):
    # The documented fallback for hosts without namespaces: rlimits, own session, socket guard.
    # As root it still runs as the slot uid, which needs an interpreter outside /root.
    python = "/usr/bin/python3" if os.geteuid() == 0 else None
    if python and not os.access(python, os.X_OK):
        pytest.skip("no system python3 for the fallback test")
    lim = SandboxLimits(cpu_s=1, wall_s=3, memory_mb=256, fsize_mb=1, nproc=8, isolation="rlimits",
                        python=python, max_parallel=2)
    progs = ["print(6 * 7)", "while True: pass", "x = bytearray(1 << 30)",
             "import socket\ntry:\n    socket.create_connection(('127.0.0.1', 9))\nexcept OSError as e:\n    print(e)",
             "while True: print('y' * 1000)",
             "import os, time\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        time.sleep(0.01)"]
    r = run_programs([Program(p) for p in progs], lim)
    assert r[0].ok and r[0].stdout.strip() == "42"
    assert not r[1].ok and not r[2].ok and "MemoryError" in r[2].stderr
    assert "unreachable" in r[3].stdout.lower()
    assert not r[4].ok and len(r[4].stdout) <= 1 << 20
    assert not r[5].ok


@pytest.fixture(scope="module")
def tmp_venv():
    """A venv under a 0700 dir in /tmp (what `python -m venv` in a temp checkout makes): its
    bin/python links to the base interpreter, its pyvenv.cfg and site-packages live under /tmp."""
    parent = Path(tempfile.mkdtemp(prefix="nemo_r1_test_venv_", dir="/tmp"))
    venv.EnvBuilder(symlinks=True, with_pip=False).create(parent / "venv")
    (parent / "secret.txt").write_text("host-tmp-secret")
    os.chmod(parent / "venv" / "pyvenv.cfg", 0o666)  # writable by anyone: only the read-only bind stops it
    try:
        yield parent / "venv"
    finally:
        shutil.rmtree(parent)


@needs_namespaces
def test_interpreter_under_tmp_runs_normal_programs_and_stops_hostile_ones(unchanged, tmp_venv):
    # The private /tmp covers the venv; the sandbox must bind the interpreter's install back in,
    # read-only, and nothing else of the host's /tmp.
    parent, cfg = tmp_venv.parent, tmp_venv / "pyvenv.cfg"
    before = (sorted(os.listdir(parent)), cfg.read_bytes())
    with tempfile.NamedTemporaryFile("w", dir="/tmp", prefix="nemo_r1_test_secret_", suffix=".txt") as host_file:
        host_file.write("host-tmp-secret")
        host_file.flush()
        os.chmod(host_file.name, 0o644)
        server = socket.socket()
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        server.settimeout(1.0)
        accepted = []
        t = threading.Thread(target=lambda: accepted.append(_accept(server)))
        t.start()
        lim = SandboxLimits(cpu_s=1, wall_s=2, nproc=8, memory_mb=256, max_parallel=2, python=str(tmp_venv / "bin" / "python"))
        progs = [
            "import sys, json\nprint(json.dumps([6 * 7, sys.prefix]))",
            f"import socket\ntry:\n    socket.create_connection(('127.0.0.1', {server.getsockname()[1]}), timeout=1)\n"
            f"    print('connected')\nexcept OSError as e:\n    print('refused', e)",
            "import os, time\nn = 0\nfor _ in range(50):\n    try:\n        pid = os.fork()\n    except OSError:\n"
            "        break\n    if pid == 0:\n        time.sleep(30)\n        os._exit(0)\n    n += 1\nprint(n)",
            "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass",
            f"for path in [{str(cfg)!r}, {str(parent / 'new.txt')!r}, {str(REPO / 'pyproject.toml')!r}]:\n"
            f"    try:\n        open(path, 'a').write('x')\n        print('ok')\n"
            f"    except OSError as e:\n        print('denied', e.errno)",
            f"import os\nprint(sorted(os.listdir({str(parent)!r})))\n"
            f"for path in [{host_file.name!r}, {str(parent / 'secret.txt')!r}]:\n"
            f"    try:\n        print(open(path).read())\n    except OSError as e:\n        print('hidden', e.errno)",
            "x = bytearray(1 << 30)",
            "import time\ntime.sleep(30)",
        ]
        r = run_programs([Program(p) for p in progs], lim)
        t.join()
        server.close()
    assert r[0].ok, (r[0].stderr, r[0].extra)
    assert r[0].stdout.strip() == f'[42, "{tmp_venv}"]'  # the /tmp venv itself, not its base
    assert "connected" not in r[1].stdout and "unreachable" in r[1].stdout.lower() and accepted == [None]
    assert r[2].ok and 0 < int(r[2].stdout) < 8  # RLIMIT_NPROC still caps the slot uid
    assert not r[3].ok and not r[3].setup_failed
    out = r[4].stdout.split("\n")
    assert r[4].ok and out[:2] == ["denied 30", "denied 13"] and out[2] in {"denied 13"} | CHECKOUT_DENIED, out
    assert r[5].ok and r[5].stdout.split("\n")[:3] == ["['venv']", "hidden 2", "hidden 2"]
    assert "host-tmp-secret" not in r[5].stdout
    assert not r[6].ok and "MemoryError" in r[6].stderr
    assert r[7].timed_out and r[7].wall_s < lim.wall_s + SLACK_S
    assert _sandbox_processes() == []
    assert (sorted(os.listdir(parent)), cfg.read_bytes()) == before


@needs_namespaces
def test_own_interpreter_from_a_0700_home_and_read_only_mounts(unchanged, tmp_venv):
    # In a private mount namespace (nothing changes on the host): a tmpfs /home with a 0700 user
    # dir holding a venv, the checkout and both venvs mounted read-only. The sandbox runs with the
    # calling interpreter (python=None) from /home, and with the /tmp venv's.
    if shutil.which("unshare") is None or shutil.which("mount") is None:
        pytest.skip("needs util-linux unshare and mount")
    base = getattr(sys, "_base_executable", sys.executable)
    home_py = "/home/nemo_r1_test/venv/bin/python"
    script = (f"import sys\nsys.path.insert(0, {str(REPO)!r})\n"
              "from nemo_r1.sandbox import Program, SandboxLimits, run_programs\n"
              "code = 'import sys\\nprint(6 * 7, sys.executable)'\n"
              "for python in (None, " + repr(str(tmp_venv / "bin" / "python")) + "):\n"
              "    r = run_programs([Program(code)], SandboxLimits(isolation='namespaces', python=python, max_parallel=1))[0]\n"
              "    print(r.stdout.strip(), r.setup_failed, r.extra.get('error'), r.stderr.strip()[-300:])\n")
    ro = lambda d: f"mount --bind {d} {d} && mount -o remount,bind,ro {d}"  # noqa: E731
    shell = " && ".join([
        "mount -t tmpfs -o mode=0755 tmpfs /home", "mkdir -m 0700 /home/nemo_r1_test",
        f"{base} -m venv --without-pip /home/nemo_r1_test/venv",
        ro(REPO), ro("/home/nemo_r1_test"), ro(tmp_venv), f"{home_py} -I -c \"$0\""])
    out = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", shell, script],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [f"42 {home_py} False None ", f"42 {tmp_venv}/bin/python False None "], out.stdout
