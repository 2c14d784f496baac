"""The acceptance test: configs/pipeline/tiny.yaml (generate -> filter -> sft -> eval) on a tiny
random Llama, once straight through and once SIGKILLed during SFT and rerun. The rerun must skip the
finished stages, resume SFT from its checkpoint and end with the same numbers."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "configs" / "pipeline" / "tiny.yaml"
STEPS = 8
"""Enough steps after the first checkpoint that the kill lands mid-run even on a busy machine."""
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}  # same threads in both runs: same sums


def pipeline_cmd(model: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "nemo_r1.cli", "pipeline", "--config", str(CONFIG), f"output_dir={out}",
            f"vars.model={model}", "vars.max_new_tokens=16", "stages.sft.checkpoint.every=1",
            f"stages.sft.train.max_steps={STEPS}"]


def sft_checkpoint(out: Path) -> Path | None:
    root = out / "03_sft" / "checkpoints"
    done = [p for p in root.glob("step_*") if (p / "nemo_r1.json").exists() and (p / "metadata.json").exists()]
    return done[0] if done else None


def summary(out: Path) -> dict[str, dict]:
    return {row["name"]: row for row in json.loads((out / "summary.json").read_text())["stages"]}


def losses(out: Path) -> list[tuple[int, float]]:
    rows = [json.loads(x) for x in (out / "03_sft" / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r["train/loss"]) for r in rows]


@pytest.mark.timeout(900)
def test_killed_pipeline_resumes_to_the_same_numbers(stopping_llama, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    # A and B run side by side (every stage on one thread: 2 cores for 2 pipelines)
    with (tmp_path / "a.log").open("w") as f:
        run_a = subprocess.Popen(pipeline_cmd(stopping_llama, a), cwd=ROOT, stdout=f, stderr=subprocess.STDOUT,
                                 start_new_session=True, env=ENV)
    try:
        rows_b, rerun, finished = kill_and_rerun(stopping_llama, b, tmp_path / "b_killed.log")
        assert run_a.wait(timeout=600) == 0, (tmp_path / "a.log").read_text()[-3000:]
    finally:
        if run_a.poll() is None:
            os.killpg(run_a.pid, signal.SIGKILL)
    rows_a = summary(a)
    assert [r["status"] for r in rows_a.values()] == ["ran"] * 4
    assert rows_a["generate"]["numbers"]["samples"] == 32
    assert 0 < rows_a["filter"]["numbers"]["kept"] < rows_a["filter"]["numbers"]["total"] == 32
    assert rows_a["sft"]["numbers"]["step"] == STEPS
    assert rows_a["eval"]["numbers"]["problems/problems"] == 8  # held-out arithmetic
    assert (a / "03_sft" / "hf" / "model.safetensors").exists()  # the exported student that eval read

    out = rerun.stdout
    assert "stage generate: done (01_generate/done.json), skipped" in out
    assert "stage filter: done (02_filter/done.json), skipped" in out
    assert "stage sft: interrupted run found, resuming it (attempt 2)" in out
    assert {p: p.stat().st_mtime_ns for p in finished} == finished, "a finished stage was rerun"
    sft_log = (b / "03_sft" / "stage.log").read_text()
    resumed = [line for line in sft_log.splitlines() if line.startswith("[sft] resumed from")]
    assert len(resumed) == 1, sft_log[-3000:]
    step = int(resumed[0].rsplit("(step ", 1)[1].rstrip(")"))
    assert 0 < step < STEPS, resumed[0] + sft_log[-2000:]  # killed mid-run, resumed from its checkpoint
    assert [r["status"] for r in rows_b.values()] == ["skipped", "skipped", "resumed", "ran"], out[-3000:]

    # CPU runs with the same seeds and threads are deterministic: the numbers are equal, not close
    assert losses(b) == losses(a), (losses(a), losses(b), sft_log[-3000:])
    for name in rows_a:
        assert rows_b[name]["numbers"] == rows_a[name]["numbers"], name


def kill_and_rerun(model: Path, b: Path, log: Path) -> tuple[dict[str, dict], subprocess.CompletedProcess, dict]:
    """SIGKILL the whole pipeline (its process group: the SFT child too) once SFT's first checkpoint
    exists, then rerun it; (summary rows, the rerun, mtimes of the finished stages' files at the kill)."""
    with log.open("w") as f:
        proc = subprocess.Popen(pipeline_cmd(model, b), cwd=ROOT, stdout=f, stderr=subprocess.STDOUT,
                                start_new_session=True, env=ENV)
    deadline = time.monotonic() + 600
    while sft_checkpoint(b) is None:
        assert proc.poll() is None, f"the pipeline ended before SFT's first checkpoint: {log.read_text()[-3000:]}"
        assert time.monotonic() < deadline, "no SFT checkpoint within 600 s"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (b / "03_sft" / "done.json").exists(), f"killed after SFT had finished: {log.read_text()[-2000:]}"
    assert (b / "03_sft" / "started.json").exists()
    files = (b / "01_generate" / "done.json", b / "01_generate" / "generations.jsonl", b / "02_filter" / "done.json",
             b / "02_filter" / "kept.jsonl")
    finished = {p: p.stat().st_mtime_ns for p in files}
    rerun = subprocess.run(pipeline_cmd(model, b), cwd=ROOT, capture_output=True, text=True, timeout=600, env=ENV)
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
    return summary(b), rerun, finished
