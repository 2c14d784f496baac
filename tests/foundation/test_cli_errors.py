"""An error inside a run reaches the user as one line naming the file/key, with a non-zero exit code.

These run the console script as a user would: no `[rankN]:` traceback, nothing after the line.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "configs" / "grpo" / "demo.yaml"


def nemo_r1(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    env.pop("NEMO_R1_VERBOSE", None)
    return subprocess.run([sys.executable, "-m", "nemo_r1.cli", *args], capture_output=True, text=True,
                          cwd=ROOT, env=env, timeout=timeout)


def assert_one_line_error(p: subprocess.CompletedProcess, *needles: str) -> str:
    out = p.stdout + p.stderr
    assert p.returncode != 0, out
    last = p.stderr.strip().splitlines()[-1]
    assert last.startswith("nemo-r1: "), out
    for n in needles:
        assert n in last, out
    assert "Traceback" not in out and "[rank" not in out, out
    return last


def test_missing_model_dir_names_the_key(tmp_path):
    p = nemo_r1("grpo", "--config", str(DEMO), "model.path=/nonexistent", f"output_dir={tmp_path}")
    last = assert_one_line_error(p, "model.path='/nonexistent'", "no such directory")
    assert p.returncode == 2 and "config error" in last


def test_malformed_data_row_names_file_and_line(tmp_path):
    data = tmp_path / "train.jsonl"
    data.write_text('{"problem": "What is 1 + 1?", "answer": "2"}\n{"problem": "What is 2 + 2?", "answer": \n')
    p = nemo_r1("grpo", "--config", str(DEMO), f"data.train={data}", f"output_dir={tmp_path / 'out'}")
    assert_one_line_error(p, f"{data}:2:", "JSON")
    assert p.returncode == 1


def test_verbose_shows_the_traceback(tmp_path):
    p = nemo_r1("grpo", "--verbose", "--config", str(DEMO), "model.path=/nonexistent", f"output_dir={tmp_path}")
    assert p.returncode == 2 and "Traceback" in p.stderr
    assert "model.path='/nonexistent'" in p.stderr.strip().splitlines()[-1]


def _fails_on_rank() -> None:
    raise FileNotFoundError("/data/x.jsonl: no such file")


def test_a_failed_rank_is_one_line_with_the_traceback_kept():
    from nemo_r1.cli import error_line
    from nemo_r1.distributed import RankFailed, run_on_cpu_ranks

    with pytest.raises(RankFailed) as e:
        run_on_cpu_ranks(_fails_on_rank, 1, timeout_s=120)
    assert e.value.summary == "rank 0 of 1 failed: FileNotFoundError: /data/x.jsonl: no such file"
    assert error_line(e.value) == e.value.summary
    assert "Traceback" in str(e.value) and "_fails_on_rank" in str(e.value)  # what a test failure shows
