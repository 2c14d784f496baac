"""`nemo-r1 data stats FILE`: what a trace or problem set holds before you train on it.

Counts (rows, distinct problems, samples per problem), token-length percentiles of the problem and
completion columns, and per-problem pass rates (from a `correct`/`reward`/`score` column, or graded
with `--grade` by the same accuracy reward `nemo-r1 filter correct` uses). Writes `stats.json` and
`stats.png` (length and pass-rate histograms) to `--out` and prints a short table.
"""

from __future__ import annotations

import argparse
import json
import os
from collections import Counter
from pathlib import Path
from typing import Any

from nemo_r1.data.decontaminate import atomic_write, parse_columns
from nemo_r1.data.filters import FilterContext, grade, problem_key
from nemo_r1.data.loading import DataError, iter_source

PERCENTILES = (5, 25, 50, 75, 95)
CORRECT_COLUMNS = ("correct", "reward", "score")
"""A row counts as correct when the first of these present is true / > 0.5."""


def percentiles(values: list[int]) -> dict[str, int]:
    """p5..p95 (nearest rank) and max of token lengths."""
    s = sorted(values)
    out = {f"p{q}": s[min(len(s) - 1, max(0, -(-q * len(s) // 100) - 1))] for q in PERCENTILES}
    out["max"] = s[-1]
    return out


def _is_correct(value: Any) -> bool:
    return bool(value) if isinstance(value, bool) else float(value) > 0.5


def compute_stats(rows: list[dict[str, Any]], ctx: FilterContext, do_grade: bool = False) -> dict[str, Any]:
    """All the numbers of the report, from rows already read."""
    keys = [problem_key(r, ctx) for r in rows]
    per_problem = Counter(keys)
    spp = Counter(per_problem.values())
    result: dict[str, Any] = {
        "rows": len(rows), "problems": len(per_problem),
        "samples_per_problem": {str(k): v for k, v in sorted(spp.items())},
        "lengths": {}, "lengths_raw": {}}
    for field in ("problem", "completion"):
        col = ctx.column(field, rows[0])
        texts = [r.get(col) for r in rows]
        if not any(isinstance(t, str) for t in texts):
            continue
        counts = ctx.token_counts([t if isinstance(t, str) else "" for t in texts])
        result["lengths"][col] = {"tokens": percentiles(counts), "tokenizer": ctx.tokenizer}
        result["lengths_raw"][col] = counts
    correct: list[bool | None] | None = None
    source = None
    if do_grade:
        verdicts = grade(rows, ctx)
        # an unparseable gold says nothing about the model: left out, as in `filter pass_rate`
        correct = [None if v == "gold_unparseable" else v == "correct" for v in verdicts]
        source = "graded by the accuracy reward"
        result["verdicts"] = dict(Counter(verdicts))
    else:
        col = next((c for c in CORRECT_COLUMNS if all(r.get(c) is not None for r in rows)), None)
        if col is not None:
            correct, source = [_is_correct(r[col]) for r in rows], f"column {col!r}"
    if correct is not None:
        ok: Counter[str] = Counter()
        graded: Counter[str] = Counter()
        for key, c in zip(keys, correct, strict=True):
            if c is not None:
                ok[key] += c
                graded[key] += 1
        rates = {k: ok[k] / n for k, n in graded.items()}
        result["pass_rate"] = {
            "source": source, "rows_correct": sum(ok.values()), "rows_graded": sum(graded.values()),
            "problems_ungradable": len(per_problem) - len(rates),
            "mean": round(sum(rates.values()) / len(rates), 4) if rates else None,
            "all_wrong": sum(r == 0 for r in rates.values()), "all_correct": sum(r == 1 for r in rates.values()),
            "histogram": {f"{r:.3f}": n for r, n in sorted(Counter(rates.values()).items())}}
    return result


def plot(stats: dict[str, Any], path: Path) -> None:
    """One PNG: a token-length histogram per text column, then the pass-rate histogram."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = list(stats["lengths_raw"].items())
    n = len(panels) + ("pass_rate" in stats)
    fig, axes = plt.subplots(1, max(n, 1), figsize=(4.5 * max(n, 1), 3.5), squeeze=False)
    for ax, (col, counts) in zip(axes[0], panels, strict=False):
        ax.hist(counts, bins=30, color="tab:blue")
        ax.set(title=f"{col} length", xlabel="tokens", ylabel="rows")
    if "pass_rate" in stats:
        hist = stats["pass_rate"]["histogram"]
        ax = axes[0][-1]
        ax.bar([float(k) for k in hist], list(hist.values()), width=0.04, color="tab:green")
        ax.set(title="pass rate per problem", xlabel="pass rate", ylabel="problems", xlim=(-0.05, 1.05))
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")  # appears whole or not at all
    fig.savefig(tmp)
    plt.close(fig)
    os.replace(tmp, path)


def table(stats: dict[str, Any]) -> str:
    """The printed summary."""
    spp = ", ".join(f"{k} x{v}" for k, v in stats["samples_per_problem"].items())
    lines = [f"rows {stats['rows']}, problems {stats['problems']}, samples per problem: {spp}"]
    if stats["lengths"]:
        lines.append(f"{'tokens':<12}" + "".join(f"{k:>7}" for k in (*[f'p{q}' for q in PERCENTILES], "max")))
        for col, d in stats["lengths"].items():
            lines.append(f"{col:<12}" + "".join(f"{v:>7}" for v in d["tokens"].values()))
    pr = stats.get("pass_rate")
    if pr:
        lines.append(f"pass rate ({pr['source']}): {pr['rows_correct']}/{pr['rows_graded']} rows correct, mean per "
                     f"problem {pr['mean']}, all wrong {pr['all_wrong']}, all correct {pr['all_correct']}"
                     + (f", ungradable (gold) {pr['problems_ungradable']}" if pr["problems_ungradable"] else ""))
        lines.append("  " + ", ".join(f"{k}: {v}" for k, v in pr["histogram"].items()))
    if "verdicts" in stats:
        lines.append("  verdicts: " + ", ".join(f"{k} {v}" for k, v in sorted(stats["verdicts"].items())))
    return "\n".join(lines)


def stats_file(data: str, ctx: FilterContext, out: str | Path | None = None, do_grade: bool = False) -> dict[str, Any]:
    """Read `data`, compute its statistics, write `stats.json` + `stats.png` under `out`."""
    rows = []
    for where, row, error in iter_source(data):
        if row is None:
            raise DataError(f"{where}: {error}")
        rows.append(row)
    if not rows:
        raise DataError(f"{data}: no rows")
    if do_grade:
        for name in ("completion", "answer"):
            if ctx.column(name) not in rows[0]:
                raise DataError(f"{data}: --grade needs a {ctx.column(name)!r} column (has {sorted(rows[0])}); "
                                f"map one with --columns {name}=NAME")
    stats = compute_stats(rows, ctx, do_grade)
    out_dir = Path(out) if out else Path(data).with_name(Path(data).stem + ".stats")
    out_dir.mkdir(parents=True, exist_ok=True)
    stats["data"], stats["json"], stats["png"] = data, str(out_dir / "stats.json"), str(out_dir / "stats.png")
    plot(stats, out_dir / "stats.png")
    with atomic_write(out_dir / "stats.json") as f:
        json.dump({k: v for k, v in stats.items() if k != "lengths_raw"}, f, indent=1, ensure_ascii=False)
        f.write("\n")
    return stats


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="nemo-r1 data", description="dataset tools")
    sub = p.add_subparsers(dest="action", required=True)
    s = sub.add_parser("stats", help="counts, token lengths, pass rates, a PNG")
    s.add_argument("file", help="rows: .jsonl/.json/.parquet, a folder or hf:owner/name")
    s.add_argument("--columns", action="append", help="FIELD=COLUMN for problem, answer, completion, id")
    s.add_argument("--tokenizer", default="embedded:smollm2", help="HF tokenizer for lengths (default %(default)s)")
    s.add_argument("--out", default=None, help="folder for stats.json and stats.png (default: FILE's name + .stats)")
    s.add_argument("--grade", action="store_true", help="grade completions against `answer` (math-verify) "
                   "for the pass rates, instead of reading a correct/reward/score column")
    s.add_argument("--workers", type=int, default=None, help="math-verify processes for --grade (0 = here)")
    return p


def main(args: argparse.Namespace | list[str] | None = None) -> int:
    """Entry point: `args` is the CLI's namespace (raw argv in `rest`) or an argv list."""
    from nemo_r1.console import raw_argv

    ns = build_parser().parse_args(raw_argv(args))
    ctx = FilterContext(columns=parse_columns(ns.columns), tokenizer=ns.tokenizer, workers=ns.workers)
    stats = stats_file(ns.file, ctx, ns.out, ns.grade)
    print(table(stats))
    print(f"wrote {stats['json']} and {stats['png']}", flush=True)
    return 0
