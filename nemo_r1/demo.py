"""`make demo`: GRPO on the embedded default model (SmolLM2-135M-Instruct) on 2 CPU cores.

Runs `configs/grpo/demo.yaml` (generated arithmetic task, accuracy reward, Megatron policy, colocated
vLLM) and draws the curves to output_dir/plots. Resumes from its last checkpoint when rerun.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from nemo_r1.config import load_config

DEMO_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "grpo" / "demo.yaml"


def main(args: argparse.Namespace) -> int:
    """`nemo-r1 demo [--config FILE] [overrides]`: the demo config unless another is given."""
    from nemo_r1.trainers.report import run_reported

    path = args.config or DEMO_CONFIG
    cfg = load_config(path, list(args.overrides))
    shown = os.path.relpath(path) if not str(os.path.relpath(path)).startswith("..") else path
    run_reported(cfg, "demo", shown)
    return 0
