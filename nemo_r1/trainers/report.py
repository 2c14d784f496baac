"""What a training command prints around its progress display: the run before, a summary after.

A user must see what is being run (model, task, output dir) before the minute of start-up, and
afterwards the numbers and where the files are, without reading metrics.jsonl. Printed on the
first rank only; the files themselves are the record (metrics.jsonl is the source of truth).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from nemo_r1.config import Config
from nemo_r1.console import duration


def is_first_rank() -> bool:
    """Rank 0 of a launched job (or a plain process): the one that talks to the user."""
    return os.environ.get("RANK", "0") == "0"


def run_header(cfg: Config, command: str, config_path: str | Path | None) -> list[str]:
    """Lines that say what is about to run."""
    model = cfg.model.path + (" (SmolLM2-135M-Instruct, bundled)" if cfg.model.path == "embedded:smollm2" else "")
    rewards = ", ".join(r.name if r.weight == 1 else f"{r.name} x{r.weight:g}" for r in cfg.rewards)
    g = cfg.grpo
    return [
        f"nemo-r1 {command}: GRPO" + (f", config {config_path}" if config_path else ""),
        f"  model    {model}",
        f"  task     {cfg.data.train} (format {cfg.data.format}), reward: {rewards}",
        f"  run      {cfg.train.max_steps} steps x {g.prompts_per_step} prompts x {g.num_generations} samples, "
        f"up to {cfg.rollout.max_new_tokens} new tokens, {g.loss_type} loss, lr {cfg.optim.lr:g}, "
        f"TP{cfg.parallel.tensor} x PP{cfg.parallel.pipeline}",
        f"  output   {cfg.output_dir}",
        "loading the model and the rollout engine ...",
    ]


def _mean(rows: list[dict[str, Any]], key: str) -> float | None:
    vals = [r[key] for r in rows if isinstance(r.get(key), int | float)]
    return sum(vals) / len(vals) if vals else None


def run_summary(cfg: Config, rows: list[dict[str, Any]], wall_s: float) -> list[str]:
    """Lines after the run: rewards first/last steps, time per step, where metrics/checkpoints/plots are.

    `rows` are this invocation's steps; the reward line reads the whole metrics.jsonl, so a resumed
    run reports the run, not the tail it added."""
    from nemo_r1.metrics import read_metrics

    out = Path(cfg.output_dir)
    history = read_metrics(out) if (out / "metrics.jsonl").exists() else rows
    n = len(rows)
    lines = [f"done in {duration(wall_s)}: {n} step{'' if n == 1 else 's'}"
             + (f" (resumed; the run has {len(history)})" if len(history) != n else "")]
    if history:
        k = min(5, len(history))
        first, last = _mean(history[:k], "reward/mean"), _mean(history[-k:], "reward/mean")
        if first is not None and last is not None:
            lines.append(f"  reward/mean  first {k} steps {first:.3f} -> last {k} steps {last:.3f}")
    if rows:
        parts = {name: _mean(rows, f"timing/{name}_s") for name in ("step", "generate", "train", "refit")}
        if parts["step"] is not None:
            split = ", ".join(f"{n} {v:.1f}" for n, v in parts.items() if n != "step" and v is not None)
            lines.append(f"  time/step    {parts['step']:.1f} s" + (f" ({split})" if split else ""))
    lines.append(f"  metrics      {out / 'metrics.jsonl'}"
                 + (f", TensorBoard {out / 'tensorboard'}" if cfg.logging.tensorboard else ""))
    ckpts = out / "checkpoints"
    steps = sorted((p for p in ckpts.glob("step_*") if p.is_dir()), key=lambda p: int(p.name.split("_")[1])) \
        if ckpts.is_dir() else []
    if steps:
        lines.append(f"  checkpoints  {ckpts}/ ({', '.join(p.name for p in steps)})")
    if (out / "plots").is_dir():
        lines.append(f"  plots        {out / 'plots'}/ ({', '.join(sorted(p.name for p in (out / 'plots').glob('*.png')))})")
    if (out / "samples.jsonl").exists():
        lines.append(f"  samples      {out / 'samples.jsonl'}")
    from nemo_r1.trainers.heldout import summary_line

    heldout = summary_line(out)
    if heldout:
        lines.append(heldout)  # last: the line that says whether the run learned
    return lines


def run_reported(cfg: Config, command: str, config_path: str | Path | None) -> list[dict[str, Any]]:
    """`run_grpo` between the header and the summary (what `nemo-r1 grpo` and `nemo-r1 demo` do)."""
    import time

    from nemo_r1.distributed import under_launcher
    from nemo_r1.trainers.grpo_run import check_grpo_batch, check_model_path, run_grpo

    t0 = time.perf_counter()
    check_model_path(cfg.model.path)  # before the header: a wrong path is the only thing to show
    check_grpo_batch(cfg)
    talk = is_first_rank()
    if talk:
        print("\n".join(run_header(cfg, command, config_path)), flush=True)
    n = cfg.parallel.tensor * cfg.parallel.pipeline
    if n > 1 and not under_launcher():
        # what torchrun would do: one process per TP x PP rank on this machine (CPU, gloo)
        import os

        from nemo_r1.distributed import run_on_cpu_ranks
        from nemo_r1.platform import cuda_available

        if cuda_available():
            raise ValueError(f"parallel.tensor x parallel.pipeline = {n} ranks: on a GPU machine start them with a "
                             f"launcher, e.g. torchrun --nproc-per-node {n} -m nemo_r1.cli {command} "
                             f"{'--config ' + str(config_path) + ' ' if config_path else ''}...")
        rows = run_on_cpu_ranks(run_grpo, n, cfg, threads=max(1, (os.cpu_count() or 1) // n), timeout_s=7 * 86400)[0]
    else:
        rows = run_grpo(cfg)
    if talk:
        print("\n".join(run_summary(cfg, rows, time.perf_counter() - t0)), flush=True)
    return rows
