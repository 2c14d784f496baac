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


def plot_eval_stages(output_dir: str | Path) -> Path:
    """A pipeline's eval stages side by side: pass@1 with +-1 standard error per stage and benchmark,
    from OUTPUT_DIR/summary.json, to OUTPUT_DIR/plots/evals.png (e.g. base -> SFT -> GRPO)."""
    import json

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(output_dir) / "summary.json"
    stages = [s for s in json.loads(path.read_text())["stages"] if s["kind"] == "eval" and s["numbers"]]
    bars = [(s["name"], key[:-len("/pass@1")], v, s["numbers"].get(key[:-len("pass@1")] + "stderr", 0.0))
            for s in stages for key, v in s["numbers"].items() if key.endswith("/pass@1")]
    if not bars:
        raise ValueError(f"{path}: no finished eval stage with pass@1 to plot")
    fig, ax = plt.subplots(figsize=(1.2 + 1.1 * len(bars), 3.2))
    labels = [name if len({b for _, b, _, _ in bars}) == 1 else f"{name}\n{bench}" for name, bench, _, _ in bars]
    ax.bar(labels, [v for *_, v, _ in bars], yerr=[e for *_, e in bars], capsize=4, color="#4c72b0")
    for i, (_, _, v, e) in enumerate(bars):
        ax.text(i, v + e + 0.01, f"{v:.3f}", ha="center", fontsize=8)
    ax.set_ylabel("pass@1 (+-1 s.e.)")
    ax.set_ylim(0, min(1.0, max(v + e for *_, v, e in bars) + 0.1))
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    out = Path(output_dir) / "plots" / "evals.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
