"""Numerics guard: the per-step losses and rewards of the demo (its first steps) and of a TP2 x PP2
GRPO run on a tiny Llama are pinned in tests/assets/golden/*.json. A change that moves them (a
faster kernel, a new default) fails here unless it says why and rewrites the file:

    .venv/bin/python tests/trainers/test_golden.py --update "why the numbers moved"

The tiny run trains on fixed rollouts (no sampling), so it is pinned to float rounding (rel 1e-5).
The demo samples with vLLM: its rewards are pinned exactly and its losses to rel 1e-4, which holds
on this machine type; a different CPU's kernels could round differently and flip a sampled token,
which the failure message names (the file records the machine it was written on).
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
GOLDEN = ROOT / "tests" / "assets" / "golden"
sys.path.insert(0, str(HERE.parent / "models"))
sys.path.insert(0, str(HERE))

DEMO_STEPS = 3
DEMO_OVERRIDES = [f"train.max_steps={DEMO_STEPS}", "checkpoint.every=0", "checkpoint.save_final=false",
                  "logging.plots=false", "logging.tensorboard=false", "grpo.eval_problems=0"]


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else ""
    import torch

    return f"{cpu}; torch {torch.__version__}"


def demo_numbers(out: Path) -> dict[str, list[float]]:
    """The demo's first DEMO_STEPS steps through the CLI: reward/mean and train/loss per step."""
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    proc = subprocess.run([sys.executable, "-m", "nemo_r1.cli", "demo", f"output_dir={out}", *DEMO_OVERRIDES],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    return {"reward/mean": [r["reward/mean"] for r in rows], "train/loss": [r.get("train/loss") for r in rows]}


def tiny_numbers(tmp: Path) -> dict[str, list[float]]:
    from grpo_parallel_ranks import golden_steps
    from mcore_tiny_models import make_tiny

    from nemo_r1.distributed import run_on_cpu_ranks

    hf = str(make_tiny("llama", tmp / "llama"))
    return next(r for r in run_on_cpu_ranks(golden_steps, 4, hf, 2, 2, 3) if r)


def check(name: str, got: dict[str, list[float]], exact: tuple[str, ...], rel: float) -> None:
    want = json.loads((GOLDEN / f"{name}.json").read_text())
    assert want["reason"], f"{name}.json must say why its numbers are what they are"
    hint = (f"the {name} numbers moved (file written on: {want['machine']}; here: {machine()}). If a change "
            f"meant to move them, rerun `python tests/trainers/test_golden.py --update \"why\"` and commit the file")
    for key, values in want["values"].items():
        if key in exact:
            assert got[key] == values, f"{key}: {got[key]} != {values}; {hint}"
        else:
            assert got[key] == pytest.approx(values, rel=rel), f"{key}: {got[key]} != {values}; {hint}"


@pytest.mark.multiproc
@pytest.mark.timeout(900)
def test_demo_first_steps_match_the_golden_file(tmp_path):
    check("demo", demo_numbers(tmp_path / "demo"), exact=("reward/mean",), rel=1e-4)


@pytest.mark.multiproc
@pytest.mark.timeout(600)
def test_tiny_tp2pp2_steps_match_the_golden_file(tmp_path):
    check("grpo_tp2pp2", tiny_numbers(tmp_path), exact=(), rel=1e-5)


def update(reason: str) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        for name, values in (("demo", demo_numbers(Path(tmp) / "demo")), ("grpo_tp2pp2", tiny_numbers(Path(tmp)))):
            path = GOLDEN / f"{name}.json"
            path.write_text(json.dumps({"reason": reason, "machine": machine(), "values": values}, indent=1) + "\n")
            print(f"{path}: {values}")


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] != "--update" or not sys.argv[2].strip():
        sys.exit('usage: python tests/trainers/test_golden.py --update "why the numbers moved"')
    update(sys.argv[2])
