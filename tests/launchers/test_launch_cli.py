"""`nemo-r1 launch` argument handling, recipes and sbatch translation (no job is submitted)."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import pytest

from launchers.cli import build_parser, load_recipe, options_from, shard_values, split_argv, substitute
from launchers.launch import LaunchOptions, make_executor, time_minutes
from launchers.task import CliEntry
from nemo_r1.cli import HANDLERS
from nemo_r1.config import load_config

RECIPES = sorted(Path("configs/cluster").glob("*.yaml"))


def _ns(argv: list[str]) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def test_split_and_substitute() -> None:
    mine, sub = split_argv(["--nodes", "2", "--", "eval", "--model", "{value}", "--out", "o/{value_name}"])
    assert mine == ["--nodes", "2"] and sub[0] == "eval"
    assert substitute(sub, {"value": "/c/step_10/", "value_name": "step_10"}) == [
        "eval", "--model", "/c/step_10/", "--out", "o/step_10"]
    assert substitute(["x={json}"], {"value": "v"}) == ["x={json}"]  # other braces are left alone


def test_shards_from_array_sweep_and_glob(tmp_path: Path) -> None:
    assert shard_values(_ns([]), {}) is None
    arr = shard_values(_ns(["--array", "3"]), {})
    assert [s["shard"] for s in arr] == ["0", "1", "2"] and arr[0]["num_shards"] == "3"
    sw = shard_values(_ns(["--sweep", "a,b"]), {})
    assert [(s["shard"], s["value"]) for s in sw] == [("0", "a"), ("1", "b")]
    listing = tmp_path / "ckpts.txt"
    listing.write_text("/x/step_5\n\n/x/step_7\n")
    assert [s["value_name"] for s in shard_values(_ns(["--sweep", f"@{listing}"]), {})] == ["step_5", "step_7"]
    for step in (2, 10, 1):
        (tmp_path / f"step_{step}").mkdir()
    g = shard_values(_ns(["--sweep-glob", str(tmp_path / "step_*")]), {})
    assert [s["value_name"] for s in g] == ["step_1", "step_2", "step_10"]  # numeric, not lexical order
    assert shard_values(_ns([]), {"sweep_glob": str(tmp_path / "step_*")})[2]["value_name"] == "step_10"
    with pytest.raises(SystemExit, match="matches nothing"):
        shard_values(_ns(["--sweep-glob", str(tmp_path / "nope_*")]), {})


@pytest.mark.parametrize("recipe", RECIPES, ids=[p.name for p in RECIPES])
def test_recipes_are_valid(recipe: Path) -> None:
    opts, cmd, sweep = load_recipe(recipe)
    lo = LaunchOptions(**opts)
    lo.validate()
    assert lo.executor == "slurm" and lo.gpus_per_node == 8
    assert cmd[0] in HANDLERS, f"{recipe}: unknown subcommand {cmd[0]}"
    if "--config" in cmd:  # the training config it runs loads, and its layout fits the job
        cfg = load_config(cmd[cmd.index("--config") + 1])
        world = lo.nodes * lo.tasks_per_node
        assert world % (cfg.parallel.tensor * cfg.parallel.pipeline) == 0
        assert lo.tasks_per_node % cfg.parallel.tensor == 0  # TP inside a node
    if sweep:
        assert "{value}" in " ".join(cmd) or "{shard}" in " ".join(cmd)


def test_recipe_errors_name_the_key(tmp_path: Path) -> None:
    bad = tmp_path / "r.yaml"
    bad.write_text("launch: {nodez: 2}\ncommand: [grpo]\n")
    with pytest.raises(SystemExit, match=r"unknown launch options \['nodez'\]"):
        load_recipe(bad)
    bad.write_text("lunch: {}\n")
    with pytest.raises(SystemExit, match="unknown top-level keys"):
        load_recipe(bad)


def test_flags_override_recipe() -> None:
    opts, _, _ = load_recipe("configs/cluster/grpo_qwen2.5-math-7b_2x8h100.yaml")
    o = options_from(_ns(["--nodes", "4", "--partition", "h100", "--env", "A=1", "--slurm-opt", "constraint=ib"]), opts)
    assert (o.nodes, o.tasks_per_node, o.partition) == (4, 8, "h100")
    assert o.env["A"] == "1" and o.env["OMP_NUM_THREADS"] == "8"
    assert o.slurm_extra == {"exclusive": True, "constraint": "ib"}


def test_time_and_validation() -> None:
    assert [time_minutes(t) for t in (90, "90", "1:30:00", "2-00:00:00", "45:30", "04:00:00")] == [
        90, 90, 90, 2880, 46, 240]
    with pytest.raises(ValueError, match="not minutes"):
        time_minutes("soon")
    with pytest.raises(ValueError, match="local executor runs on this machine only"):
        LaunchOptions(executor="local", nodes=2).validate()
    with pytest.raises(ValueError, match="leaves no room for signal_delay_s"):
        LaunchOptions(time=2, signal_delay_s=120).validate()
    with pytest.raises(ValueError, match="executor='pbs'"):
        LaunchOptions(executor="pbs").validate()


def test_requeue_resumes_training_commands() -> None:
    e = CliEntry(["grpo", "--config", "x.yaml", "train.resume=none", "train.max_steps=5"]).for_requeue()
    assert e.argv == ["grpo", "--config", "x.yaml", "train.max_steps=5", "train.resume=auto"]
    assert CliEntry(["eval", "--model", "m"]).for_requeue().argv == ["eval", "--model", "m"]


def test_sbatch_script_carries_the_options(tmp_path: Path) -> None:
    if shutil.which("srun") is None:
        pytest.fail("submitit's Slurm executor needs srun: run `sudo tools/install_slurm.sh` (CI does)")
    opts, _, _ = load_recipe("configs/cluster/grpo_qwen2.5-math-7b_2x8h100.yaml")
    o = options_from(_ns(["--partition", "h100", "--account", "proj", "--log-dir", str(tmp_path)]), opts)
    script = make_executor(o)._executor._make_submission_file_text("CMD", "uid")  # what sbatch receives
    for line in ("--nodes=2", "--ntasks-per-node=8", "--gpus-per-node=8", "--cpus-per-task=12", "--time=240",
                 "--signal=USR2@300", "--requeue", "--exclusive", "--partition=h100", "--account=proj",
                 "--job-name=grpo-qwen2.5-math-7b"):
        assert f"#SBATCH {line}" in script, line
