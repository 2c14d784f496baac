"""Every cluster recipe's training run fits its job: `nemo-r1 plan` for the recipe's nodes and GPUs,
at the layout its training config asks for, stays inside the per-GPU memory; the layout a recipe
pastes as a comment is what `nemo-r1 plan` prints today; reproductions quote their source's numbers.

(tests/launchers/test_launch_cli.py checks the recipe fields and the TP x PP divisibility; the
memory model itself is tested in tests/launchers/test_launch_plan.py.)
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest

from launchers.cli import load_recipe
from launchers.plan import plan_main
from nemo_r1.config import load_config

RECIPES = sorted(Path("configs/cluster").glob("*.yaml"))
TRAINING = [p for p in RECIPES if "--config" in load_recipe(p)[1]]

# recipe -> (source named in its `Reported (...)` line, AIME24, MATH-500 as the source reports them)
REPRODUCTIONS = {
    "grpo_simplerl-zoo_qwen2.5-math-7b_2x8h100.yaml": ("SimpleRL-Zoo README", 40.0, 80.2),
    "grpo_dr-grpo_qwen2.5-math-7b_1x8h100.yaml": ("Understanding R1-Zero-Like Training", 43.3, 80.0),
    "grpo_deepscaler-1.5b_2x8h100.yaml": ("DeepScaleR README", 43.1, 87.8),
    "sft_openr1-distill-7b_1x8h100.yaml": ("open-r1 README", 52.7, 89.0),
}


def run_command(recipe: Path) -> tuple[dict, str, list[str]]:
    """(launch options, training config path, overrides after it) as `nemo-r1 launch --recipe` runs it."""
    opts, cmd, _ = load_recipe(recipe)
    i = cmd.index("--config")
    return opts, cmd[i + 1], [a for a in cmd[i + 2:] if "=" in a and not a.startswith("-")]


def plan_json(argv: list[str], capsys: pytest.CaptureFixture[str]) -> dict:
    plan_main([*argv, "--json"])
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("recipe", TRAINING, ids=[p.name for p in TRAINING])
def test_training_layout_fits_the_job(recipe: Path, capsys: pytest.CaptureFixture[str]) -> None:
    opts, config, overrides = run_command(recipe)
    cfg = load_config(config, overrides)
    model_json = re.search(r"--model-config\s+(\S+)", recipe.read_text())
    assert model_json, f"{recipe}: name the model's config.json for `nemo-r1 plan` (--model-config ...)"
    nodes, gpus = opts.get("nodes", 1), opts["gpus_per_node"]
    assert opts["tasks_per_node"] == gpus, f"{recipe}: a training recipe runs one rank per GPU"
    report = plan_json(["--config", config, "--model-config", model_json.group(1), "--nodes", str(nodes),
                        "--gpus-per-node", str(gpus), *(["--recompute"] if cfg.model.recompute == "full" else []),
                        *overrides], capsys)
    layout = {(e["tp"], e["pp"]): e for e in report["layouts"]}.get((cfg.parallel.tensor, cfg.parallel.pipeline))
    assert layout is not None, f"{recipe}: TP{cfg.parallel.tensor} x PP{cfg.parallel.pipeline} is no valid layout"
    assert layout["tp"] * layout["pp"] * layout["dp"] == nodes * gpus == report["world_size"]
    assert layout["fits"], (f"{recipe}: TP{layout['tp']} x PP{layout['pp']} needs {layout['peak_gib']:.1f} GiB per "
                            f"GPU, more than {report['gpu_mem_gib']:.0f} GiB less headroom")
    assert layout["peak_gib"] < report["gpu_mem_gib"]
    if cfg.data.format == "problem":  # GRPO: the plan sizes activations at train.max_seq_len
        scheduled = cfg.schedules.get("rollout.max_new_tokens")
        budgets = [cfg.rollout.max_new_tokens, *(scheduled.values if scheduled else [])]
        assert max(budgets) < cfg.train.max_seq_len, f"{recipe}: a completion longer than the planned sequence"
        assert cfg.grpo.prompts_per_step % layout["dp"] == 0, f"{recipe}: prompts split unevenly over DP"


def pasted_layout(text: str) -> tuple[list[str], list[str]] | None:
    """(plan argv, pasted output lines) of a `# Layout (nemo-r1 plan ...), per-GPU GiB:` comment."""
    lines = text.splitlines()
    start = next((i for i, ln in enumerate(lines) if ln.startswith("# Layout (nemo-r1 plan ")), None)
    if start is None:
        return None
    command, i = "", start
    while True:
        command += " " + lines[i].lstrip("#").strip().rstrip("\\")
        if "), per-GPU GiB:" in lines[i]:
            break
        i += 1
    argv = shlex.split(command.split("nemo-r1 plan", 1)[1].split("), per-GPU GiB:")[0])
    pasted = []
    for ln in lines[i + 1:]:
        if not ln.startswith("#   "):
            break
        pasted.append(ln[4:].strip())
    return argv, pasted


@pytest.mark.parametrize("recipe", RECIPES, ids=[p.name for p in RECIPES])
def test_pasted_layout_is_what_plan_prints(recipe: Path, capsys: pytest.CaptureFixture[str]) -> None:
    found = pasted_layout(recipe.read_text())
    if found is None:
        assert recipe.name not in REPRODUCTIONS, f"{recipe}: paste its `nemo-r1 plan` layout as a comment"
        return
    argv, pasted = found
    assert pasted, f"{recipe}: the layout comment has no plan output under it"
    opts, config, _ = run_command(recipe)
    assert argv[argv.index("--config") + 1] == config  # the plan of the run the recipe launches
    assert argv[argv.index("--nodes") + 1] == str(opts["nodes"])
    assert argv[argv.index("--gpus-per-node") + 1] == str(opts["gpus_per_node"])
    plan_main(argv)
    printed = {ln.strip() for ln in capsys.readouterr().out.splitlines()}
    stale = [ln for ln in pasted if ln not in printed]
    assert not stale, f"{recipe}: pasted plan lines differ from `nemo-r1 plan {' '.join(argv)}` now: {stale}"
    assert any(ln.startswith("recommended:") for ln in pasted)


@pytest.mark.parametrize("name", sorted(REPRODUCTIONS))
def test_reproductions_quote_their_source(name: str) -> None:
    source, aime, math500 = REPRODUCTIONS[name]
    text = (Path("configs/cluster") / name).read_text()
    block = re.search(r"^# Reported \((?P<src>[^)]*(?:\([^)]*\)[^)]*)*)\):\n(?P<nums>(?:#   .*\n)+)", text, re.M)
    assert block, f"{name}: add `# Reported (<source>):` and the numbers under it"
    assert source in block["src"]
    nums = block["nums"]
    assert re.search(rf"AIME24 {aime}\b", nums), f"{name}: AIME24 {aime} ({source})"
    assert re.search(rf"MATH-500 {math500}\b", nums), f"{name}: MATH-500 {math500} ({source})"


def test_deepscaler_lengthens_its_context_at_the_source_steps() -> None:
    _, config, overrides = run_command(Path("configs/cluster/grpo_deepscaler-1.5b_2x8h100.yaml"))
    cfg = load_config(config, overrides)
    s = cfg.schedules["rollout.max_new_tokens"]
    assert (s.steps, s.values, s.interp) == ([0, 1040, 1520], [8192, 16384, 24576], "step")
    assert cfg.train.max_seq_len >= 1024 + 24576  # the source's 1,024 prompt tokens fit the last phase
    assert cfg.train.max_steps > 1520


def test_dr_grpo_recipe_uses_the_unbiased_loss() -> None:
    _, config, overrides = run_command(Path("configs/cluster/grpo_dr-grpo_qwen2.5-math-7b_1x8h100.yaml"))
    cfg = load_config(config, overrides)
    assert (cfg.grpo.loss_type, cfg.grpo.advantage_scale, cfg.grpo.beta) == ("dr_grpo", "none", 0.0)
    assert cfg.rollout.max_new_tokens == 3000  # MAX_TOKENS of the loss is the generation budget
