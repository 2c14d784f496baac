"""`nemo-r1 sft` through the CLI: metrics, eval loss, and exact resume after SIGKILL mid-epoch."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from kill_run import kill_after_first_checkpoint
from sft_ranks import make_tiny_chat_model, write_datasets

ROOT = Path(__file__).resolve().parents[2]
KEYS = ("train/loss", "train/grad_norm", "train/lr", "train/tokens_per_s", "train/packing_efficiency")


def sft_cmd(hf: Path, data: Path, out: Path, *extra: str) -> list[str]:
    # 48 text documents pack into ~20 rows of 64 tokens: 5 steps of 4 rows per epoch, 7 steps cross into epoch 2
    return [sys.executable, "-m", "nemo_r1.cli", "sft", f"model.path={hf}", f"data.train={data / 'text.jsonl'}",
            f"data.eval={data / 'held_out' / 'text.jsonl'}", "data.format=text", f"output_dir={out}",
            "train.max_seq_len=64", "train.global_batch_size=4", "train.micro_batch_size=2", "train.max_steps=7",
            "optim.lr=3e-3", "optim.min_lr=3e-4", "optim.scheduler=cosine", "optim.warmup_ratio=0.25",  # 0.25 x 7 steps -> 2
            "checkpoint.every=2", "checkpoint.keep=1", "sft.eval_every=3", "logging.tensorboard=false",
            "sft.overlong=truncate", *extra]


def _metrics(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.timeout(600)
def test_sft_metrics_and_exact_resume_after_sigkill(tmp_path):
    hf = make_tiny_chat_model(tmp_path / "model")
    data = tmp_path / "data"
    write_datasets(data)
    write_datasets(data / "held_out", n=8, seed=1)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}  # the CPU path, on any machine
    full = subprocess.run(sft_cmd(hf, data, tmp_path / "full"), cwd=ROOT, capture_output=True, text=True,
                          timeout=600, env=env)
    assert full.returncode == 0, full.stderr[-3000:]
    rows = _metrics(tmp_path / "full")
    assert [r["step"] for r in rows] == list(range(1, 8))
    assert len({round(r["train/loss"], 5) for r in rows}) == 7  # every step sees other data
    for key in KEYS:
        assert all(isinstance(r[key], float) for r in rows), key
    assert [("eval/loss" in r) for r in rows] == [False, False, True, False, False, True, True]
    assert rows[-1]["eval/loss"] < rows[2]["eval/loss"] < rows[0]["train/loss"]  # it learns
    assert rows[0]["train/lr"] == pytest.approx(1.5e-3) and rows[1]["train/lr"] == pytest.approx(3e-3)
    assert all(0.8 < r["train/packing_efficiency"] <= 1.0 for r in rows)
    assert rows[4]["train/epoch"] < 1 <= rows[5]["train/epoch"]

    killed = tmp_path / "killed"
    # mid-epoch: step 2 of 5 saved, step 3 lost or half done
    ckpt = kill_after_first_checkpoint(sft_cmd(hf, data, killed), killed, tmp_path / "killed.log", ROOT,
                                       timeout_s=300, poll_s=0.05, env=env)
    assert ckpt.name == "step_2", "killed too late"
    resumed = subprocess.run(sft_cmd(hf, data, killed, "train.resume=auto"), cwd=ROOT, capture_output=True,
                             text=True, timeout=600, env=env)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed from" in resumed.stdout
    again = _metrics(killed)
    assert [r["step"] for r in again] == list(range(1, 8))  # no duplicate or lost rows
    for a, b in zip(again[2:], rows[2:], strict=True):  # the data position, optimizer, schedule came back
        assert ("eval/loss" in a) == ("eval/loss" in b)
        for key in ("train/loss", "train/grad_norm", "train/lr", "eval/loss"):
            if key in b:
                assert a[key] == pytest.approx(b[key], rel=1e-6, abs=1e-7), (a["step"], key)
