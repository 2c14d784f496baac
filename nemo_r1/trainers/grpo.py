"""`nemo-r1 grpo`: generate -> reward -> advantages -> train -> refit, on a Megatron policy with a
colocated vLLM engine per data-parallel replica.

Every rank runs the loop. Within a replica (the TP x PP ranks that hold one model copy) the
engine's rollouts and the rewards are shared, so all its ranks build the same batch; across
replicas the prompts differ and gradients are reduced by the policy. Everything random is
seeded from (train.seed, step), so a resumed run repeats what an uninterrupted one would do.

This module is the command; imports point one way from it: the loop (`grpo_run.run_grpo`, with
the header and summary of `report.run_reported`), then one step's pieces (`grpo_step`).
"""

from __future__ import annotations

import argparse

from nemo_r1.config import load_config


def main(args: argparse.Namespace) -> int:
    """CLI entry: load the config (errors before any heavy import), then run with header and summary."""
    cfg = load_config(args.config, args.overrides)
    from nemo_r1.trainers.report import run_reported

    run_reported(cfg, "grpo", args.config)
    return 0
