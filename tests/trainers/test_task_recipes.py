"""The CPU recipes of the generated tasks: each is paired with its task (data source, prompt,
reward) and runs two GRPO steps through the CLI on the embedded model."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from nemo_r1.config import load_config
from nemo_r1.data.tasks import default_rows, split_of
from nemo_r1.data.tasks.registry import TASKS

ROOT = Path(__file__).resolve().parents[2]
RECIPES = [("countdown_cpu.yaml", "countdown", (0.0, 1.0)), ("knights_cpu.yaml", "knights_knaves", (-3.0, 3.0))]


@pytest.mark.parametrize(("recipe", "task", "bounds"), RECIPES)
def test_recipe_uses_its_tasks_prompt_and_reward(recipe, task, bounds):
    cfg, spec = load_config(ROOT / "configs/grpo" / recipe), TASKS.get(task)
    assert (cfg.data.train, cfg.data.eval) == (f"generated:{task}", f"generated:{task}:heldout")
    assert cfg.data.prompt_suffix == spec.prompt_suffix
    assert [dict(s) for s in cfg.data.few_shot] == [dict(s) for s in spec.few_shot]
    assert [r.name for r in cfg.rewards] == [r["name"] for r in spec.rewards] == [task]


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize(("recipe", "task", "bounds"), RECIPES)
def test_recipe_runs_two_grpo_steps(tmp_path, recipe, task, bounds):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "nemo_r1.cli", "grpo", "--config", str(ROOT / "configs/grpo" / recipe),
           f"output_dir={out}", "train.max_steps=2", "rollout.max_new_tokens=16", "grpo.prompts_per_step=2",
           "grpo.num_generations=2", "train.micro_batch_size=4", "data.max_samples=8", "grpo.eval_problems=2",
           "checkpoint.every=0", "checkpoint.save_final=false", "logging.tensorboard=false",
           "logging.plots=false", "rollout.kv_cache_gib=0.125"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=280)
    assert proc.returncode == 0, proc.stderr[-4000:]
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2]
    lo, hi = bounds
    for r in rows:
        assert math.isfinite(r["reward/mean"]) and lo <= r["reward/mean"] <= hi
        assert f"reward/{task}" in r and lo <= r[f"reward/{task}"] <= hi
    # the run trained on the task's train split: the default number of distinct rows, none held out
    train = [json.loads(line)["problem"] for line in (out / "data" / f"{task}-train.jsonl").read_text().splitlines()]
    assert len(set(train)) == len(train) == default_rows(task)
    assert {split_of(p, TASKS.get(task).heldout_fraction) for p in train} == {"train"}
