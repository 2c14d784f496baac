"""The one metrics sink every trainer uses: metrics.jsonl + TensorBoard (+ W&B when enabled).

metrics.jsonl is the source of truth (outside scripts parse it; one object per step, always with
"step"). Each line is flushed and fsynced so a crash loses at most the step being written; on
resume, lines past the restored step are dropped so the file never holds two histories.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any


class MetricsLogger:
    """Write per-step scalars; only the rank that should log creates one (rank 0 by convention)."""

    def __init__(self, output_dir: str | Path, tensorboard: bool = True, wandb: bool = False,
                 wandb_project: str = "nemo-r1", run_config: dict[str, Any] | None = None,
                 resume_step: int | None = None) -> None:
        self.output_dir = Path(output_dir)
        self.output_dir.mkdir(parents=True, exist_ok=True)
        self.path = self.output_dir / "metrics.jsonl"
        if resume_step is not None:
            truncate_after(self.path, resume_step)
        elif self.path.exists():
            self.path.unlink()  # a fresh run must not append to a previous run's history
        self._file = open(self.path, "a")
        self._tb = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(log_dir=str(self.output_dir / "tensorboard"), purge_step=resume_step)
        self._wandb = None
        if wandb:
            try:
                import wandb as wb
            except ImportError:
                print("[metrics] logging.wandb=true but wandb is not installed; logging to jsonl/TensorBoard only")
            else:
                self._wandb = wb.init(project=wandb_project, dir=str(self.output_dir), config=run_config,
                                      resume="allow")

    def log(self, step: int, metrics: dict[str, Any]) -> None:
        """Append one step; non-finite floats are written as null (JSON has no NaN)."""
        row: dict[str, Any] = {"step": int(step)}
        for k, v in metrics.items():
            row[k] = _scalar(v)
        self._file.write(json.dumps(row) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())
        for k, v in row.items():
            if k == "step" or not isinstance(v, (int, float)) or isinstance(v, bool):
                continue
            if self._tb is not None:
                self._tb.add_scalar(k, v, step)
        if self._wandb is not None:
            self._wandb.log({k: v for k, v in row.items() if k != "step"}, step=step)

    def close(self) -> None:
        self._file.close()
        if self._tb is not None:
            self._tb.close()
        if self._wandb is not None:
            self._wandb.finish()

    def __enter__(self) -> MetricsLogger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a metrics.jsonl (a directory is taken to mean its metrics.jsonl); a torn last line is ignored."""
    p = Path(path)
    if p.is_dir():
        p = p / "metrics.jsonl"
    rows = []
    with open(p) as f:
        for line in f:
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                break
    return rows


def truncate_after(path: Path, step: int) -> None:
    """Keep only rows with step <= `step` (resume replays later steps), atomically."""
    if not path.exists():
        return
    keep = [r for r in read_metrics(path) if r.get("step", 0) <= step]
    tmp = path.with_suffix(".jsonl.tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in keep))
    os.replace(tmp, path)


def _scalar(v: Any) -> Any:
    if hasattr(v, "item"):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v
