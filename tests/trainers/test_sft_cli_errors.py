"""`nemo-r1 sft` mistakes end in one line naming the key or file, before any model loads."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _sft(*overrides: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nemo_r1.cli", "sft", *overrides], cwd=ROOT, capture_output=True,
                          text=True, timeout=300, env={"CUDA_VISIBLE_DEVICES": "", "PATH": "/usr/bin:/bin"})


@pytest.mark.parametrize("overrides, message", [
    (["data.format=problem", "data.train=x.jsonl"], "config error: data.format='problem' has no targets"),
    (["data.format=text"], "config error: data.train is empty"),
])
def test_config_mistakes_are_one_line(overrides, message):
    proc = _sft(*overrides)
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], proc.stderr


def test_a_broken_row_names_the_file_and_line(tmp_path):
    from sft_ranks import make_tiny_chat_model

    hf = make_tiny_chat_model(tmp_path / "model")
    data = tmp_path / "bad.jsonl"
    data.write_text(json.dumps({"text": "fine"}) + "\n" + '{"text": "cut sho\n')
    proc = _sft(f"model.path={hf}", f"data.train={data}", "data.format=text", f"output_dir={tmp_path / 'out'}")
    assert proc.returncode == 1
    assert f"{data}:2: invalid JSON" in proc.stderr.strip().splitlines()[-1], proc.stderr[-2000:]
