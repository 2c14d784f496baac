"""The launcher on a real Slurm cluster started on this host (slurmctld, 2 emulated slurmd nodes,
slurmdbd on MariaDB so submitit reads job states through sacct).

All jobs are submitted at once by a module fixture so their waits overlap (the time-limit job
spends most of its life waiting for Slurm's signal): a 2-node TP2 Megatron training job, the same
job caught by its time limit (requeued, resumed from its checkpoint), a job that is cancelled, and
a 2-shard array through the `nemo-r1 launch` command path whose second shard fails.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import cloudpickle
import pytest
import submitit

from launchers.cli import report, submit_command
from launchers.launch import LaunchOptions, gather, launch
from launchers.local_cluster import INSTALL_HINT, LocalSlurm, missing_binaries
from launchers.smoke import sleep_for, train_tiny_gpt
from nemo_r1.metrics import read_metrics

cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the nodes cannot import this test file

STEPS = 4


def _exploding_shard(i: int) -> int:
    if i == 1:
        raise ValueError(f"shard {i} exploded on purpose")
    return i * 10


@pytest.fixture(scope="module")
def cluster():
    missing = missing_binaries()
    if missing:
        pytest.fail(f"Slurm is not installed (missing {', '.join(missing)}): {INSTALL_HINT}. "
                    "CI runs tools/install_slurm.sh before the tests.")
    c = LocalSlurm(nodes=2, cpus_per_node=4)
    c.start()  # stops what it started if any daemon fails
    saved = os.environ.get("SLURM_CONF")
    os.environ.update(c.env)
    try:
        yield c
    finally:
        c.stop()
        if saved is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = saved


@pytest.fixture(scope="module")
def jobs(cluster: LocalSlurm, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("slurm_jobs")
    opts = dict(executor="slurm", nodes=2, tasks_per_node=1, cpus_per_task=1, log_dir=str(root / "logs"),
                health_timeout_s=120)
    # Slurm sends SIGUSR2 at its first 30 s check after limit - 60 s: 30-60 s into a 2-minute job
    timeout_job = launch(LaunchOptions(**opts, time=2, signal_delay_s=60, job_name="timelimit"),
                         train_tiny_gpt, str(root / "timelimit"), steps=STEPS, tp=2, stall_after_step=2)
    train_job = launch(LaunchOptions(**opts, time=10, signal_delay_s=60, job_name="tp2"),
                       train_tiny_gpt, str(root / "tp2"), steps=STEPS, tp=2)
    sleeper = launch(LaunchOptions(**{**opts, "nodes": 1}, time=10, signal_delay_s=60, job_name="sleeper"),
                     sleep_for, 300)
    (root / "plots_ok").mkdir()
    (root / "plots_ok" / "metrics.jsonl").write_text("".join(
        json.dumps({"step": s, "train/loss": 1.0 / s}) + "\n" for s in range(1, 4)))
    array = submit_command(LaunchOptions(**{**opts, "nodes": 1}, time=10, signal_delay_s=60, job_name="arr"),
                           ["plot", "{value}"], shards=[
                               {"shard": "0", "value": str(root / "plots_ok")},
                               {"shard": "1", "value": str(root / "no_such_run")}])
    return {"root": root, "timeout": timeout_job, "train": train_job, "sleeper": sleeper, "array": array}


def _losses(out: Path) -> dict[int, float]:
    return {r["step"]: r["train/loss"] for r in read_metrics(out)}


def test_two_node_tp2_megatron_training(jobs: dict[str, Any]) -> None:
    results = jobs["train"].results()
    assert len(results) == 2
    assert sorted(r["rank"] for r in results) == [0, 1]
    assert sorted(r["node_rank"] for r in results) == [0, 1]  # one rank on each emulated node
    assert all(r["world_size"] == 2 and r["tp"] == 2 and r["last_step"] == STEPS for r in results)
    assert sorted(r["tp_rank"] for r in results) == [0, 1]
    # TP ranks compute the same loss (vocab-parallel cross entropy reduces over the TP group)
    assert results[0]["losses"] == results[1]["losses"]
    losses = _losses(jobs["root"] / "tp2")
    assert sorted(losses) == list(range(1, STEPS + 1))
    assert losses == pytest.approx({int(k): v for k, v in results[0]["losses"].items()}, abs=0)
    assert losses[STEPS] < losses[1]
    assert (jobs["root"] / "tp2" / "checkpoints" / f"step_{STEPS}" / "tp_rank_01.pt").exists()
    log = Path(str(jobs["train"].paths.stdout).replace("%t", "0")).read_text()
    assert "all 2 ranks on 2 node(s) reached the rendezvous" in log


def test_cancelled_job_ends_cancelled(jobs: dict[str, Any]) -> None:
    job = jobs["sleeper"]
    deadline = time.monotonic() + 120
    while job.watcher.get_state(job.job_id, mode="force") != "RUNNING" and time.monotonic() < deadline:
        time.sleep(1)
    job.cancel()
    deadline = time.monotonic() + 60
    while not job.done(force_check=True) and time.monotonic() < deadline:
        time.sleep(1)
    assert job.state.startswith("CANCELLED")
    with pytest.raises(submitit.core.utils.UncompletedJobError):
        job.results()


def test_failing_array_shard_shows_traceback_and_logs(jobs: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    arr = jobs["array"]
    assert arr[0].job_id.endswith("_0") and arr[1].job_id.endswith("_1")  # one Slurm array
    result = gather(arr, progress=False)
    assert result.results[0] == 0  # `nemo-r1 plot` exit code
    assert (jobs["root"] / "plots_ok" / "plots").is_dir()
    assert [f.index for f in result.failures] == [1]
    f = result.failures[0]
    assert "Traceback" in f.error and "no_such_run" in f.error
    assert f.state == "FAILED"
    assert Path(f.stderr).exists() and "no_such_run" in Path(f.stderr).read_text()
    assert report(arr, progress=False) == 1
    err = capsys.readouterr().err
    assert "1/2 shards succeeded" in err and f"stderr: {f.stderr}" in err


def test_time_limit_requeues_and_resumes_from_checkpoint(jobs: dict[str, Any]) -> None:
    results = jobs["timeout"].results()  # waits through the signal, the requeue and the resumed run
    assert len(results) == 2
    # resumed from the checkpoint of step 2 (or later, had the resumed run been caught again)
    assert all(r["resumed_from"] >= 2 and r["last_step"] == STEPS and not r["stopped"] for r in results)
    log = Path(str(jobs["timeout"].paths.stdout).replace("%t", "0")).read_text()
    assert "SIGUSR2: time limit or preemption" in log and "requeueing as attempt 1" in log
    assert "attempt 1, master" in log
    # exact resume: the interrupted run's metrics equal the uninterrupted TP2 run's, step for step
    resumed, straight = _losses(jobs["root"] / "timelimit"), _losses(jobs["root"] / "tp2")
    assert sorted(resumed) == list(range(1, STEPS + 1))
    assert resumed == pytest.approx(straight, abs=1e-6)
