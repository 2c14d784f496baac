"""`nemo-r1 sft` config mistakes end in one line naming the key, before any model loads (a broken
data row's one-line error is the shared loader's, tested in tests/foundation/test_cli_errors.py)."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _sft(*overrides: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nemo_r1.cli", "sft", *overrides], cwd=ROOT, capture_output=True,
                          text=True, timeout=300, env={"CUDA_VISIBLE_DEVICES": "", "PATH": "/usr/bin:/bin"})


@pytest.mark.parametrize("overrides, message", [
    (["data.format=problem", "data.train={rows}"], "row 1 has no `solution` to learn from"),
    (["data.format=text"], "config error: data.train is empty"),
])
def test_config_mistakes_are_one_line(overrides, message, tmp_path):
    rows = tmp_path / "problems.jsonl"
    rows.write_text('{"problem": "1+1?", "answer": "2"}\n')
    proc = _sft(*[o.format(rows=rows) for o in overrides])
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], proc.stderr

