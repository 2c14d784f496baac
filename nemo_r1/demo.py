"""`make demo`: GRPO on the embedded default model (SmolLM2-135M-Instruct) on 2 CPU cores.

Runs `configs/grpo/demo.yaml` (generated arithmetic task, accuracy reward, Megatron policy, colocated
vLLM) and draws the curves to output_dir/plots. Resumes from its last checkpoint when rerun.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from nemo_r1.config import load_config

DEMO_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "grpo" / "demo.yaml"


def main(args: argparse.Namespace) -> int:
    from nemo_r1.trainers.grpo_run import run_grpo

    cfg = load_config(args.config or DEMO_CONFIG, list(args.overrides))
    rows = run_grpo(cfg)
    if rows:
        k = min(5, len(rows))
        first = sum(r["reward/mean"] for r in rows[:k]) / k
        last = sum(r["reward/mean"] for r in rows[-k:]) / k
        print(f"[demo] reward/mean: first {k} steps {first:.3f} -> last {k} steps {last:.3f}; "
              f"curves in {cfg.output_dir}/plots")
    return 0
