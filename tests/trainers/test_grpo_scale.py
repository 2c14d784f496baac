"""The GRPO loop across data-parallel replicas: an idle replica cannot hang the step, and the
ranks of one replica train on the same batch even when their reward functions disagree, and the step's
update equals the reference computation."""

import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "rollout"))

from grpo_scale_ranks import grpo_dp_step, reference_step  # noqa: E402
from rollout_tiny import make_tiny_llama  # noqa: E402

from nemo_r1.distributed import run_on_cpu_ranks  # noqa: E402


@pytest.mark.multiproc
@pytest.mark.timeout(900)
def test_idle_replica_and_disagreeing_rewards_tp2_dp2(tmp_path):
    from nemo_r1.embedded import ensure_smollm2

    model = make_tiny_llama(str(tmp_path / "tiny"), str(ensure_smollm2()))
    # a replica that skipped the step's collectives would hang the others: bounded by timeout_s
    res = sorted(run_on_cpu_ranks(grpo_dp_step, 4, model, str(tmp_path / "run"), timeout_s=300),
                 key=lambda r: r["rank"])
    b = [r["batches"] for r in res]
    assert all(len(x) == 1 for x in b), "every rank built exactly one batch for the step"
    # replica 0 (ranks 0, 1): the leader's rewards [0, 1] (+ 0.000) reach both ranks, not rank 1's own
    assert b[0][0]["rewards"] == [0.0, 1.0]
    assert b[0] == b[1]
    assert b[0][0]["loss_tokens"] > 0 and any(a != 0 for a in b[0][0]["advantages"])
    # replica 1 (ranks 2, 3): its only group scored all equal; dynamic sampling dropped it, and it took
    # part in the step with a zero-contribution group (no loss tokens) instead of skipping collectives
    assert b[2] == b[3] and b[2][0]["loss_tokens"] == 0
    row = res[0]["rows"][0]
    assert row["step"] == 1 and row["reward/mean"] == pytest.approx(0.5, abs=1e-6)  # replica 0's leader: 0, 1
    # the update equals the reference computation: replica 0's batch trained alone with the step's counts
    ref = run_on_cpu_ranks(reference_step, 1, model, str(tmp_path / "ref"), str(tmp_path / "run" / "replica0_batch.pt"),
                           2, timeout_s=300)[0]
    assert ref["grad_norm"] > 0
    assert row["train/loss"] == pytest.approx(ref["loss"], rel=1e-5, abs=1e-7)
    assert row["train/grad_norm"] == pytest.approx(ref["grad_norm"], rel=1e-5)


@pytest.mark.multiproc
@pytest.mark.timeout(600)
def test_cli_spawns_the_pipeline_ranks_outside_a_launcher(tmp_path):
    """`nemo-r1 grpo parallel.pipeline=2` on one machine: the command starts the 2 CPU ranks itself."""
    import json
    import os
    import subprocess

    from nemo_r1.embedded import ensure_smollm2

    model = make_tiny_llama(str(tmp_path / "tiny"), str(ensure_smollm2()))
    root = HERE.parents[1]
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    proc = subprocess.run(
        [sys.executable, "-m", "nemo_r1.cli", "grpo", "--config", str(root / "configs/grpo/demo.yaml"),
         f"output_dir={tmp_path / 'run'}", f"model.path={model}", "parallel.pipeline=2", "train.max_steps=1",
         "rollout.max_new_tokens=8", "grpo.prompts_per_step=2", "grpo.num_generations=2", "train.micro_batch_size=2",
         "checkpoint.every=0", "checkpoint.save_final=false", "logging.tensorboard=false", "logging.plots=false",
         "data.max_samples=4", "rollout.kv_cache_gib=0.125"],
        cwd=root, env=env, capture_output=True, text=True, timeout=540)
    assert proc.returncode == 0, proc.stderr[-4000:]
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1] and rows[0]["train/loss"] == rows[0]["train/loss"]
    assert "PP2" in proc.stdout  # the header names the layout it ran
