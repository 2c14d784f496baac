"""The metrics sink: jsonl rows with step, TensorBoard events, resume truncation, plots."""

import json

from nemo_r1.metrics import MetricsLogger, read_metrics
from nemo_r1.plot import plot_metrics


def test_rows_tensorboard_and_nonfinite(tmp_path):
    import torch

    with MetricsLogger(tmp_path) as log:
        log.log(0, {"train/loss": torch.tensor(2.5), "reward/mean": 0.1})
        log.log(1, {"train/loss": float("nan"), "reward/mean": 0.3, "note": "x"})
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert rows == [{"step": 0, "train/loss": 2.5, "reward/mean": 0.1},
                    {"step": 1, "train/loss": None, "reward/mean": 0.3, "note": "x"}]
    events = list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    assert events, "no TensorBoard event file"
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(events[0].parent))
    acc.Reload()
    assert [round(e.value, 6) for e in acc.Scalars("reward/mean")] == [0.1, 0.3]


def test_resume_drops_rows_after_checkpoint_and_fresh_run_starts_clean(tmp_path):
    with MetricsLogger(tmp_path, tensorboard=False) as log:
        for s in range(5):
            log.log(s, {"train/loss": float(s)})
    with MetricsLogger(tmp_path, tensorboard=False, resume_step=2) as log:
        log.log(3, {"train/loss": 30.0})
    assert [(r["step"], r["train/loss"]) for r in read_metrics(tmp_path)] == [(0, 0.0), (1, 1.0), (2, 2.0), (3, 30.0)]
    with MetricsLogger(tmp_path, tensorboard=False) as log:
        log.log(0, {"train/loss": 7.0})
    assert read_metrics(tmp_path) == [{"step": 0, "train/loss": 7.0}]


def test_torn_last_line_is_ignored(tmp_path):
    (tmp_path / "metrics.jsonl").write_text('{"step": 0, "a": 1}\n{"step": 1, "a"')
    assert read_metrics(tmp_path) == [{"step": 0, "a": 1}]


def test_plot_writes_one_png_per_group(tmp_path):
    with MetricsLogger(tmp_path, tensorboard=False) as log:
        for s in range(10):
            log.log(s, {"train/loss": 1.0 / (s + 1), "train/kl": 0.01 * s, "reward/mean": s / 10})
    files = plot_metrics(tmp_path, smooth=3)
    assert sorted(p.name for p in files) == ["reward.png", "train.png"]
    for p in files:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 5000
