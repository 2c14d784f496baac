"""Greedy scores on held-out problems (`data.eval`) before GRPO trains and after its last step.

Why inside the run: the rollout engine already holds the policy's weights (the base model before
step 1, the refit weights after the last step), so the evaluation needs no conversion of a
Megatron checkpoint and no second engine. The problems go through the same prompt pipeline as
training (template, few-shot turns, suffix) and are scored by the run's reward functions, so
"held-out" differs from training only in which problems are asked. `generated:NAME:heldout` is the
task's held-out split, disjoint from every train file of that task.

Results land in `output_dir/heldout.json` (atomically): `base` is written before step 1 and kept
across resumes, `final` after the last step; the run summary prints "held-out accuracy X -> Y".
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from nemo_r1.config import Config, ConfigError, to_dict

RESULTS = "heldout.json"


def heldout_examples(cfg: Config, tokenizer: Any) -> list[dict[str, Any]]:
    """The first `grpo.eval_problems` rows of `data.eval`, prompted exactly as training prompts."""
    import torch.distributed as dist

    from nemo_r1.data.config import DataConfig
    from nemo_r1.data.formats import load_examples
    from nemo_r1.data.tasks import PREFIX, parse_source, write_task

    source = cfg.data.eval
    if source.startswith(PREFIX):
        try:
            name, split = parse_source(source)
        except ValueError as e:
            raise ConfigError(f"data.eval: {e}") from None
        path = Path(cfg.output_dir) / "data" / f"{name}-{split}-eval.jsonl"
        if not dist.is_initialized() or dist.get_rank() == 0:
            write_task(name, path, cfg.grpo.eval_problems, seed=cfg.train.seed, split=split)
        if dist.is_initialized():
            dist.barrier()
        source = str(path)
    dcfg = DataConfig(**{**to_dict(cfg)["data"], "train": source, "max_samples": cfg.grpo.eval_problems})
    return load_examples(dcfg, tokenizer).examples


def score_heldout(cfg: Config, rollout: Any, rows: list[dict[str, Any]], reward_fn: Any, replica: int,
                  replicas: int, replica_group: Any, dp_group: Any) -> dict[str, dict[str, float]]:
    """Greedy completion of every row, scored by the run's rewards: {reward name: mean, se, n}.

    A collective: each replica takes every `replicas`-th row and the sums are all-reduced over the
    data-parallel group, so every rank returns the same numbers."""
    import torch.distributed as dist

    from nemo_r1.trainers.grpo_step import score_on_replica

    mine = rows[replica::replicas]
    sampling = replace(cfg.rollout.sampling(1, cfg.train.seed), temperature=0.0)
    rollouts = rollout.generate([r["prompt"] for r in mine], sampling) if mine else []
    names = [s.name for s in cfg.rewards]
    sums = torch.zeros(len(names), 3, dtype=torch.float64)  # per reward: sum, sum of squares, count
    if rollouts:
        _, _, per_name = score_on_replica(mine, rollouts, 1, reward_fn, replica_group)
        for i, name in enumerate(names):
            vals = [v for v in per_name.get(name, []) if v is not None]
            sums[i] = torch.tensor([sum(vals), sum(v * v for v in vals), len(vals)], dtype=torch.float64)
    if replicas > 1:
        dist.all_reduce(sums, group=dp_group)
    out = {}
    for i, name in enumerate(names):
        s, sq, n = (float(x) for x in sums[i])
        mean = s / n if n else float("nan")
        var = max(sq / n - mean * mean, 0.0) * n / (n - 1) if n > 1 else 0.0
        out[name] = {"mean": mean, "se": math.sqrt(var / n) if n else float("nan"), "n": int(n)}
    return out


def read_results(output_dir: str | Path) -> dict[str, Any]:
    """`output_dir/heldout.json` or {} when the run has none."""
    path = Path(output_dir) / RESULTS
    return json.loads(path.read_text()) if path.exists() else {}


def write_result(output_dir: str | Path, key: str, step: int, scores: dict[str, dict[str, float]]) -> None:
    """Add `key` (base | final) to heldout.json, atomically."""
    out = Path(output_dir)
    data = read_results(out)
    data[key] = {"step": step, "scores": scores}
    fd, tmp = tempfile.mkstemp(dir=out, prefix=f".{RESULTS}.")
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=1)
    os.replace(tmp, out / RESULTS)


def summary_line(output_dir: str | Path) -> str | None:
    """'held-out accuracy 0.315 -> 0.410 (+-0.033 / +-0.035, 200 problems, greedy)' for the first
    reward, when both ends were scored."""
    data = read_results(output_dir)
    if "base" not in data or "final" not in data:
        return None
    name = next(iter(data["final"]["scores"]))
    a, b = data["base"]["scores"][name], data["final"]["scores"][name]
    diff, se = b["mean"] - a["mean"], math.hypot(a["se"], b["se"])
    z = f", {diff / se:+.1f} s.e." if se > 0 else ""
    return (f"held-out {name} {a['mean']:.3f} -> {b['mean']:.3f} (+-{a['se']:.3f} / +-{b['se']:.3f}, "
            f"{b['n']} problems, greedy, step {data['base']['step']} -> {data['final']['step']}{z})")
