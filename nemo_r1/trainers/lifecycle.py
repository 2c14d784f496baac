"""Run lifecycle shared by the trainers: step seeds, sample logs, resume, checkpoints, run setup.

The stop flag the loops check at each step boundary (SIGTERM/SIGINT) is `nemo_r1.signals.StopFlag`,
shared with the launchers.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nemo_r1.config import OptimConfig
    from nemo_r1.models.train import OptimSettings


def optim_settings(optim: OptimConfig, total_steps: int) -> OptimSettings:
    """The `optim` section as the plain values `models.train.setup_training` takes, its warmup
    (steps or a ratio of the run) resolved for a run of `total_steps`."""
    from nemo_r1.models.train import OptimSettings

    return OptimSettings(lr=optim.lr, min_lr=optim.min_lr, weight_decay=optim.weight_decay,
                         adam_beta1=optim.adam_beta1, adam_beta2=optim.adam_beta2, adam_eps=optim.adam_eps,
                         warmup_steps=optim.warmup_for(total_steps), scheduler=optim.scheduler,
                         decay_steps=optim.decay_steps, distributed_optimizer=optim.distributed_optimizer)


def step_seed(seed: int, step: int, purpose: str) -> int:
    """A seed that depends only on (run seed, step, purpose), so a resumed run samples what an
    uninterrupted one would have, whatever happened to RNG state in between."""
    digest = hashlib.sha256(f"{seed}:{step}:{purpose}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


class SampleLog:
    """Append-only jsonl of sample completions (prompt, completion, rewards) every N steps."""

    def __init__(self, path: str | Path, resume_step: int | None = None) -> None:
        self.path = Path(path)
        if resume_step is None and self.path.exists():
            self.path.unlink()
        elif resume_step is not None and self.path.exists():
            keep = [line for line in self.path.read_text().splitlines() if _step_of(line) <= resume_step]
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text("".join(line + "\n" for line in keep))
            os.replace(tmp, self.path)

    def write(self, step: int, rows: list[dict[str, Any]]) -> None:
        with open(self.path, "a") as f:
            for r in rows:
                f.write(json.dumps({"step": step, **r}) + "\n")
            f.flush()
            os.fsync(f.fileno())


def _step_of(line: str) -> int:
    try:
        return int(json.loads(line)["step"])
    except (ValueError, KeyError, TypeError):
        return 1 << 62  # torn line: drop it


def resume_dir(resume: str, output_dir: str | Path) -> Path | None:
    """The checkpoint `train.resume` names: `auto` = the latest in output_dir (None if none),
    `none` = a fresh start, else a checkpoint dir that must exist."""
    from nemo_r1.models.checkpoint import latest_checkpoint

    if resume == "none":
        return None
    if resume == "auto":
        return latest_checkpoint(output_dir)
    path = Path(resume)
    if not path.is_dir():
        raise FileNotFoundError(f"train.resume={resume!r}: no checkpoint there "
                                "(use `auto`, `none` or a checkpoints/step_N dir)")
    return path


def prune_checkpoints(output_dir: str | Path, keep: int) -> None:
    """Delete all but the newest `keep` checkpoints/step_N (keep 0: delete none); first rank only."""
    import shutil

    if keep <= 0:
        return
    done = sorted((Path(output_dir) / "checkpoints").glob("step_*"), key=lambda p: int(p.name.split("_")[1]))
    for old in done[:-keep]:
        shutil.rmtree(old, ignore_errors=True)


def any_rank(flag: bool) -> bool:
    """True on every rank if it is true on any (a stop signal reaches nodes at different moments)."""
    import torch
    import torch.distributed as dist

    if not dist.is_initialized():
        return flag
    t = torch.tensor([int(flag)])
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def checkpoint_due(every: int, step: int, last: bool, save_final: bool, stopping: bool) -> bool:
    """Save every `every` steps, when the ranks agreed to stop, and after the last step if asked."""
    return bool(every and step % every == 0) or stopping or (last and save_final)


def finish_run(log: Any, output_dir: str | Path, plots: bool) -> None:
    """Close the metrics sink (the rank holding it) and, on request, draw the curves."""
    if log is None:
        return
    log.close()
    if plots:
        from nemo_r1.plot import plot_metrics

        plot_metrics(Path(output_dir), smooth=5)
