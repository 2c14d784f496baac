"""A schedule through the real GRPO loop on a tiny Llama: rollout.max_new_tokens goes 4 -> 8 at step
2, and a run resumed from its step-2 checkpoint in a new process generates and logs exactly what the
uninterrupted run did at step 3."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent

# the base value (6) differs from both scheduled values, so a resumed run that skipped the schedule, or
# counted its steps from the resume point (4 again), would generate other lengths at step 3
SCHEDULE = ["rollout.max_new_tokens=6", "schedules={rollout.max_new_tokens: {steps: [0, 2], values: [4, 8]}}",
            "grpo.prompts_per_step=2", "data.max_samples=8", "checkpoint.every=2", "checkpoint.keep=0"]


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> str:
    sys.path.insert(0, str(HERE.parent / "rollout"))
    from rollout_tiny import make_tiny_llama

    from nemo_r1.embedded import ensure_smollm2

    return make_tiny_llama(str(tmp_path_factory.mktemp("tiny")), str(ensure_smollm2()))


def run(out: Path, model: str, *overrides: str) -> list[dict]:
    """features_run.py: the real loop, recording each trained batch (loss tokens = completion lengths)."""
    proc = subprocess.run([sys.executable, str(HERE / "features_run.py"), str(out), model, *SCHEDULE, *overrides],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.split("STEPS ", 1)[1])


def metrics(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_scheduled_budget_per_step_and_exact_resume(model, tmp_path):
    whole = tmp_path / "whole"
    steps = run(whole, model, "train.max_steps=3")
    rows = metrics(whole)
    assert [r["schedule/rollout.max_new_tokens"] for r in rows] == [4, 4, 8]
    lengths = [s["loss_tokens"] for s in steps]  # every sample is scored, so its loss tokens = its length
    assert max(lengths[0]) == max(lengths[1]) == 4  # a random tiny model rarely stops early
    assert max(lengths[2]) == 8 and all(n <= 8 for n in lengths[2])
    assert [r["rollout/mean_length"] for r in rows] == [sum(x) / len(x) for x in lengths]

    # the state a run stopped after step 2 leaves: its step-2 checkpoint (features_run saves no final one)
    assert sorted(p.name for p in (whole / "checkpoints").iterdir()) == ["step_2"]
    resumed = tmp_path / "resumed"
    shutil.copytree(whole, resumed)
    after = run(resumed, model, "train.max_steps=3", "train.resume=auto")
    assert len(after) == 1, "resumed at step 3: one more step only"
    assert after[0] == steps[2]  # same rewards, same truncations, same completion lengths
    again = metrics(resumed)
    assert [r["step"] for r in again] == [1, 2, 3]
    for key in ("schedule/rollout.max_new_tokens", "rollout/mean_length", "rollout/truncated_frac", "reward/mean"):
        assert again[2][key] == rows[2][key], key
    assert again[2]["train/loss"] == pytest.approx(rows[2]["train/loss"], rel=1e-5, abs=1e-7)
