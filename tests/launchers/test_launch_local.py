"""The local executor: the same 2-task TP2 Megatron job as on Slurm, without Slurm, and the
`nemo-r1 launch` command path running a real subcommand in the task's process."""

from __future__ import annotations

from pathlib import Path

import pytest

from launchers.cli import launch_cli
from launchers.launch import LaunchOptions, launch
from launchers.smoke import train_tiny_gpt
from nemo_r1.metrics import read_metrics


@pytest.mark.multiproc
def test_two_task_tp2_training_locally(tmp_path: Path) -> None:
    opts = LaunchOptions(executor="local", tasks_per_node=2, time=15, signal_delay_s=60,
                         log_dir=str(tmp_path / "logs"), health_timeout_s=120)
    job = launch(opts, train_tiny_gpt, str(tmp_path / "run"), steps=3, tp=2)
    results = job.results()
    assert sorted((r["rank"], r["tp_rank"]) for r in results) == [(0, 0), (1, 1)]
    assert all(r["world_size"] == 2 and r["last_step"] == 3 and r["resumed_from"] is None for r in results)
    assert results[0]["losses"] == results[1]["losses"]
    rows = read_metrics(tmp_path / "run")
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert [r["train/loss"] for r in rows] == [results[0]["losses"][s] for s in (1, 2, 3)]
    assert rows[-1]["train/loss"] < rows[0]["train/loss"]
    assert (tmp_path / "run" / "checkpoints" / "step_3" / "tp_rank_00.pt").exists()


def test_launch_command_runs_a_subcommand_in_the_task(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text('{"step": 1, "train/loss": 2.0}\n{"step": 2, "train/loss": 1.0}\n')
    rc = launch_cli(["--executor", "local", "--time", "10", "--signal-delay", "60",
                     "--log-dir", str(tmp_path / "logs"), "--", "plot", str(run)])
    assert rc == 0
    assert (run / "plots").is_dir() and any((run / "plots").iterdir())
    out = capsys.readouterr().out
    assert "submitted job" in out and "finished" in out
    rc = launch_cli(["--executor", "local", "--time", "10", "--signal-delay", "60",
                     "--log-dir", str(tmp_path / "logs"), "--", "plot", str(tmp_path / "missing")])
    err = capsys.readouterr().err
    # the task's one-line error (naming the missing path) reaches the launcher's report, with the log paths
    assert rc == 1 and f"No such file or directory: '{tmp_path / 'missing'}'" in err and "stderr:" in err
