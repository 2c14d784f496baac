"""`nemo-r1 filter`: keep the generated traces worth distilling, and say why each other one went.

Filters (`filters.py`: correct, pass_rate LOW HIGH, length, format, judge) run in the order given,
each on the rows the previous ones kept. Outputs: the kept rows unchanged (`--out`), the dropped
rows with `filter` and `reason` fields added (`<out>.dropped.jsonl`), and a JSON report with the
counts per filter and reason (`<out>.report.json`); kept + dropped = input, checked before writing.
Example: `nemo-r1 filter --data traces.jsonl --out kept.jsonl pass_rate 0.1 0.6 correct length format`.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from nemo_r1.data.decontaminate import PROGRESS_MIN_ROWS, atomic_write, parse_columns
from nemo_r1.data.filters import FILTERS, FilterContext
from nemo_r1.data.loading import DataError, iter_source

Step = tuple[str, tuple[float, ...]]


def parse_steps(tokens: Sequence[str]) -> list[Step]:
    """`pass_rate 0.1 0.6 correct` -> [("pass_rate", (0.1, 0.6)), ("correct", ())]."""
    steps: list[Step] = []
    i = 0
    while i < len(tokens):
        name = tokens[i]
        if name not in FILTERS:
            raise DataError(f"unknown filter {name!r}; filters: {', '.join(FILTERS.names())}")
        arg_names = FILTERS.get(name).args
        raw = tokens[i + 1:i + 1 + len(arg_names)]
        try:
            values = tuple(float(v) for v in raw)
            if len(values) != len(arg_names):
                raise ValueError
        except ValueError:
            raise DataError(f"filter {name} takes {len(arg_names)} numbers ({' '.join(a.upper() for a in arg_names)}), "
                            f"got {' '.join(raw) or 'none'}") from None
        steps.append((name, values))
        i += 1 + len(arg_names)
    if not steps:
        raise DataError(f"name at least one filter: {', '.join(FILTERS.names())} (e.g. correct length)")
    return steps


def read_rows(data: str, ctx: FilterContext) -> list[dict[str, Any]]:
    """All rows (pass rates need every sample of a problem); a bad row or a missing column is one
    error naming file and line."""
    rows = []
    for where, row, error in iter_source(data):
        if row is None:
            raise DataError(f"{where}: {error}")
        for name in ("completion", "answer"):
            if ctx.column(name) not in row:
                raise DataError(f"{where}: no {ctx.column(name)!r} column (has {sorted(row)}); "
                                f"map one with --columns {name}=NAME")
        rows.append(row)
    if not rows:
        raise DataError(f"{data}: no rows")
    return rows


def run_filters(rows: list[dict[str, Any]], steps: Sequence[Step], ctx: FilterContext
                ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """(kept rows, dropped rows with filter/reason, per-step counts), applying the steps in order."""
    kept, dropped, per_step = list(rows), [], []
    for name, args in steps:
        outcomes = FILTERS.get(name).fn(kept, ctx, *args)
        assert len(outcomes) == len(kept), f"filter {name} gave {len(outcomes)} outcomes for {len(kept)} rows"
        survivors = []
        for row, o in zip(kept, outcomes, strict=True):
            if o.keep:
                survivors.append(row)
            else:
                dropped.append({**row, "filter": name, "reason": o.reason, **(o.detail or {})})
        per_step.append({"filter": name, "args": list(args), "input": len(kept), "kept": len(survivors),
                         "dropped": len(kept) - len(survivors),
                         "kept_reasons": dict(Counter(o.reason for o in outcomes if o.keep)),
                         "dropped_reasons": dict(Counter(o.reason for o in outcomes if not o.keep))})
        kept = survivors
    return kept, dropped, per_step


def filter_file(data: str, out: str | Path, steps: Sequence[Step], ctx: FilterContext | None = None, *,
                dropped: str | Path | None = None, report: str | Path | None = None) -> dict[str, Any]:
    """Filter `data` into `out` (+ the dropped rows and a report beside it); returns the report."""
    ctx = ctx or FilterContext()
    out = Path(out)
    if out.suffix != ".jsonl":
        raise DataError(f"--out {out}: write a .jsonl file")
    dropped_path = Path(dropped) if dropped else out.with_name(out.stem + ".dropped.jsonl")
    report_path = Path(report) if report else out.with_name(out.stem + ".report.json")
    rows = read_rows(data, ctx)
    if ctx.progress is None:
        ctx.progress = sys.stderr.isatty() and len(rows) >= PROGRESS_MIN_ROWS
    kept, gone, per_step = run_filters(rows, steps, ctx)
    by_reason = Counter(f"{d['filter']}/{d['reason']}" for d in gone)
    assert len(kept) + sum(by_reason.values()) == len(rows), "kept + dropped != input"
    for s in per_step:
        assert s["kept"] + sum(s["dropped_reasons"].values()) == s["input"], s
    result = {"data": data, "out": str(out), "dropped_file": str(dropped_path), "report": str(report_path),
              "columns": ctx.columns, "filters": per_step,
              "counts": {"input": len(rows), "kept": len(kept), "dropped": len(gone)},
              "dropped_by_reason": dict(sorted(by_reason.items()))}
    for path, items in ((out, kept), (dropped_path, gone)):
        with atomic_write(path) as f:
            for row in items:
                f.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")
    with atomic_write(report_path) as f:
        json.dump(result, f, indent=1, ensure_ascii=False)
        f.write("\n")
    return result


def summary(report: dict[str, Any]) -> str:
    """The lines printed after a run: input, each filter's drops by reason, what is left."""
    c = report["counts"]
    lines = [f"filter: {c['input']} rows of {report['data']} -> kept {c['kept']} in {report['out']}"]
    for s in report["filters"]:
        args = "".join(f" {a:g}" for a in s["args"])
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(s["dropped_reasons"].items(), key=lambda kv: -kv[1]))
        extra = "".join(f", {k} {v}" for k, v in s["kept_reasons"].items() if k not in ("ok", "correct"))
        lines.append(f"  {s['filter']}{args}: {s['input']} -> {s['kept']}" + (f" (dropped {reasons})" if reasons else "")
                     + (f" (kept{extra[1:]})" if extra else ""))
    lines.append(f"dropped rows: {report['dropped_file']}\nreport: {report['report']}")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    names = ", ".join(f"{e.name}{''.join(' ' + a.upper() for a in e.args)} ({e.doc.rstrip('.')})"
                      for e in map(FILTERS.get, FILTERS.names()))
    p = argparse.ArgumentParser(prog="nemo-r1 filter", description="filter generated traces; filters run in "
                                f"the order given: {names}")
    p.add_argument("filters", nargs="*", help="filter names and their numbers, e.g. pass_rate 0.1 0.6 correct length")
    p.add_argument("--data", required=True, help="traces: .jsonl/.json/.parquet, a folder or hf:owner/name")
    p.add_argument("--out", required=True, help="output .jsonl: the kept rows, unchanged")
    p.add_argument("--dropped", default=None, help="dropped rows (default: OUT's name + .dropped.jsonl)")
    p.add_argument("--report", default=None, help="JSON report (default: OUT's name + .report.json)")
    p.add_argument("--columns", action="append", help="FIELD=COLUMN for problem, answer, completion, id, "
                   "finish_reason, e.g. answer=gold")
    p.add_argument("--max-completion-tokens", type=int, default=None, help="length: token limit (--tokenizer's)")
    p.add_argument("--max-chars", type=int, default=None, help="length: character limit")
    p.add_argument("--tokenizer", default="embedded:smollm2", help="length: HF tokenizer (default %(default)s)")
    p.add_argument("--no-think", action="store_true", help="format: do not require a closed <think> block")
    p.add_argument("--judge-model", default=None, help="judge: HF checkpoint (or embedded:smollm2)")
    p.add_argument("--judge-backend", default="vllm", choices=("vllm", "hf"), help="judge: engine backend")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=None, help="math-verify processes (0 = in this process)")
    p.add_argument("--no-progress", action="store_true")
    return p


def main(args: argparse.Namespace | list[str] | None = None) -> int:
    """Entry point: `args` is the CLI's namespace (raw argv in `rest`) or an argv list."""
    from nemo_r1.console import raw_argv

    argv = raw_argv(args)
    ns = build_parser().parse_intermixed_args(argv)
    steps = parse_steps(ns.filters)
    if any(name == "judge" for name, _ in steps) and not ns.judge_model:
        raise DataError("the judge filter needs --judge-model (an HF checkpoint dir or embedded:smollm2)")
    ctx = FilterContext(columns=parse_columns(ns.columns), think=not ns.no_think,
                        max_completion_tokens=ns.max_completion_tokens, max_chars=ns.max_chars,
                        tokenizer=ns.tokenizer, workers=ns.workers, judge_model=ns.judge_model,
                        judge_backend=ns.judge_backend, seed=ns.seed, progress=False if ns.no_progress else None)
    report = filter_file(ns.data, ns.out, steps, ctx, dropped=ns.dropped, report=ns.report)
    print(summary(report), flush=True)
    return 0
