"""The checkout stands on its own: a copy of its tracked files in an empty temporary folder (nothing
beside it, no `.git`) passes the tests that read data, recipes and paths, importing the copy's code."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from nemo_r1.data.bundled import PROJECT_ROOT

SUITES = ["tests/data", "tests/foundation/test_config.py"]
"""Everything that finds files relative to the checkout (data, recipes, the no-outside-path check)."""


def tracked_files() -> list[str]:
    out = subprocess.run(["git", "ls-files", "-z"], cwd=PROJECT_ROOT, capture_output=True, check=True)
    return [f for f in out.stdout.decode().split("\0") if f]


def test_a_copy_with_nothing_beside_it_passes(tmp_path):
    copy = tmp_path / "alone" / "nemo-r1"
    for rel in tracked_files():
        src = PROJECT_ROOT / rel
        if src.is_file():  # (a file deleted in the working tree but still tracked is skipped)
            (copy / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, copy / rel)
    assert sorted(p.name for p in copy.parent.iterdir()) == ["nemo-r1"]
    env = {k: v for k, v in os.environ.items() if k != "NEMO_R1_DATA"}
    where = subprocess.run([sys.executable, "-c", "import nemo_r1; print(nemo_r1.__file__)"], cwd=copy, env=env,
                           capture_output=True, text=True, check=True).stdout.strip()
    assert Path(where).is_relative_to(copy)  # the copy's code runs, not the installed checkout's
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *SUITES], cwd=copy,
                         env=env, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert " passed" in run.stdout.splitlines()[-1] and "failed" not in run.stdout.splitlines()[-1]
