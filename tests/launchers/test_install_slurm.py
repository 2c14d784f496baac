"""`make test` brings the Slurm stack the launcher tests need, or stops at once saying what to run.

The "not installed" paths are simulated on a machine that has Slurm: `SLURM_SEARCH_DIRS` points the
script's lookup at an empty folder, `APT_GET` at a missing package manager.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from nemo_r1.data.bundled import PROJECT_ROOT

SCRIPT = PROJECT_ROOT / "tools" / "install_slurm.sh"
AS_NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"] if os.geteuid() == 0 else []


def run(cmd: list[str], cwd: Path, **env: str) -> tuple[subprocess.CompletedProcess, float]:
    t0 = time.monotonic()
    out = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=60, env={**os.environ, **env})
    return out, time.monotonic() - t0


@pytest.fixture
def world_readable_dir():
    """A folder an unprivileged uid can enter (pytest's tmp_path is private to root)."""
    path = Path(tempfile.mkdtemp(prefix="nemo-r1-slurm-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_installed_stack_returns_at_once():
    out, took = run(["bash", str(SCRIPT)], PROJECT_ROOT)
    assert out.returncode == 0 and "already installed" in out.stdout and took < 10


def test_without_root_make_test_stops_in_one_line_before_any_install(world_readable_dir):
    repo = world_readable_dir / "clone"
    (repo / "tools").mkdir(parents=True)
    for rel in ("Makefile", "pyproject.toml", "tools/install_slurm.sh", "tools/install_venv.sh"):
        shutil.copy(PROJECT_ROOT / rel, repo / rel)
    for path in [repo, *repo.rglob("*")]:
        path.chmod(0o777 if path.is_dir() else 0o644)
    out, took = run([*AS_NOBODY, "make", "-s", "test"], repo, SLURM_SEARCH_DIRS=str(world_readable_dir / "none"),
                    HOME=str(repo))
    assert out.returncode != 0 and took < 10
    lines = [ln for ln in out.stderr.splitlines() if ln.startswith("install_slurm:")]
    assert len(lines) == 1 and "sudo bash" in lines[0] and "install_slurm.sh" in lines[0], out.stderr
    assert not (repo / ".venv").exists()  # it stopped before the 2-minute venv install


@pytest.mark.skipif(os.geteuid() != 0, reason="the package-manager check runs only for root")
def test_root_without_apt_says_what_to_install(tmp_path):
    out, took = run(["bash", str(SCRIPT)], tmp_path, SLURM_SEARCH_DIRS=str(tmp_path), APT_GET="/no/apt-get")
    assert out.returncode == 1 and took < 10
    assert out.stderr.count("\n") == 1 and "no /no/apt-get here" in out.stderr and "slurm-wlm" in out.stderr
