"""`nemo-r1 plot OUTPUT_DIR`: metric curves from metrics.jsonl to PNG files under OUTPUT_DIR/plots."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from nemo_r1.metrics import read_metrics


def plot_metrics(output_dir: str | Path, keys: list[str] | None = None, smooth: int = 1) -> list[Path]:
    """One PNG per metric group (the part before '/'), one panel per key; returns the files written."""
    import matplotlib

    matplotlib.use("Agg")  # headless: never needs a display
    import matplotlib.pyplot as plt

    rows = read_metrics(output_dir)
    if not rows:
        raise ValueError(f"{output_dir}/metrics.jsonl has no rows to plot")
    series: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for r in rows:
        for k, v in r.items():
            if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool):
                if keys is None or k in keys:
                    series[k].append((r["step"], float(v)))
    if keys:
        missing = [k for k in keys if k not in series]
        if missing:
            raise ValueError(f"no metric named {missing} in {output_dir}/metrics.jsonl; have {sorted(series)}")
    groups: dict[str, list[str]] = defaultdict(list)
    for k in sorted(series):
        groups[k.split("/")[0] if "/" in k else "misc"].append(k)
    out_dir = Path(output_dir) / "plots"
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for group, names in groups.items():
        fig, axes = plt.subplots(len(names), 1, figsize=(7, 2.4 * len(names)), squeeze=False)
        for ax, name in zip(axes[:, 0], names, strict=True):
            steps, vals = zip(*series[name], strict=True)
            ax.plot(steps, vals, lw=1, alpha=0.5 if smooth > 1 else 1.0)
            if smooth > 1 and len(vals) >= smooth:
                avg = [sum(vals[i - smooth + 1:i + 1]) / smooth for i in range(smooth - 1, len(vals))]
                ax.plot(steps[smooth - 1:], avg, lw=2, label=f"mean of {smooth}")
                ax.legend(loc="best", fontsize=7)
            ax.set_title(name, fontsize=9)
            ax.set_xlabel("step", fontsize=8)
            ax.grid(alpha=0.3)
        fig.tight_layout()
        path = out_dir / f"{group}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    return written
