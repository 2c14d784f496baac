"""The lines around a training run: what runs (before), rewards, timings and file locations (after)."""

from nemo_r1.config import load_config
from nemo_r1.metrics import MetricsLogger
from nemo_r1.trainers.report import run_header, run_summary


def test_header_says_model_task_and_output(tmp_path):
    cfg = load_config(None, [f"output_dir={tmp_path}", "data.train=/d/train.jsonl", "train.max_steps=7"])
    text = "\n".join(run_header(cfg, "grpo", "my.yaml"))
    assert "config my.yaml" in text and "embedded:smollm2" in text and "/d/train.jsonl" in text
    assert "7 steps" in text and str(tmp_path) in text


def test_summary_reads_the_whole_run_and_points_at_the_files(tmp_path):
    cfg = load_config(None, [f"output_dir={tmp_path}"])
    with MetricsLogger(tmp_path, tensorboard=False) as log:
        for step in range(1, 11):
            log.log(step, {"reward/mean": step / 10, "timing/step_s": 2.0, "timing/generate_s": 1.0})
    (tmp_path / "checkpoints" / "step_10").mkdir(parents=True)
    resumed = [{"step": s, "reward/mean": s / 10, "timing/step_s": 2.0, "timing/generate_s": 1.0} for s in (9, 10)]
    lines = run_summary(cfg, resumed, 75.0)
    assert lines[0] == "done in 1m15s: 2 steps (resumed; the run has 10)"
    assert "first 5 steps 0.300 -> last 5 steps 0.800" in lines[1]
    assert "2.0 s (generate 1.0)" in lines[2]
    assert any("metrics.jsonl" in line for line in lines) and any("(step_10)" in line for line in lines)
