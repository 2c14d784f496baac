"""`nemo-r1 decontaminate`: write a dataset without the rows that copy a benchmark problem, and say which.

A row is dropped when a checked column (`--fields`, default the problem) is a normalised copy of a
benchmark problem or shares word n-grams with one (one hit by default, open-r1's rule; `--threshold`
asks for a share of the row's n-grams instead). Rows repeating an earlier row's checked columns are
dropped as duplicates. The report names, per benchmark, each dropped row, the benchmark row it copies
and the words they share; kept + dropped = input. Normalisation and the index are `decontam.py`'s,
the same that `data.decontaminate` uses in training configs.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import itertools
import json
import os
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, TextIO

from nemo_r1.data.bundled import BENCHMARKS
from nemo_r1.data.decontam import NGRAM, Match, NgramIndex, benchmark_rows, resolve_benchmarks, words
from nemo_r1.data.loading import HF_PREFIX, DataError, iter_source, resolve_local

TEXT_COLUMNS = ("problem", "question", "prompt")
"""Read from a benchmark file given without `:COLUMN`, first present wins."""
PROGRESS_MIN_ROWS = 5000
"""Inputs at least this long (or of unknown length) show a progress bar on a terminal."""
_FILE_SUFFIXES = (".jsonl", ".json", ".parquet")


@contextlib.contextmanager
def atomic_write(path: Path) -> Iterator[TextIO]:
    """A text file that appears at `path` only when complete: a temp file in the same folder, then a
    rename, so an interrupted run never leaves a half-written output that looks finished."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            yield f
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _split(items: Sequence[str] | None) -> list[str]:
    return [p.strip() for it in items or [] for p in it.split(",") if p.strip()]


def parse_columns(items: Sequence[str] | None) -> dict[str, str]:
    """`problem=question,solution=answer` -> {field: column in the file}."""
    out = {}
    for it in _split(items):
        field, eq, column = it.partition("=")
        if not eq or not field.strip() or not column.strip():
            raise DataError(f"--columns: expected FIELD=COLUMN (e.g. problem=question), got {it!r}")
        out[field.strip()] = column.strip()
    return out


def _file_benchmark(spec: str) -> tuple[str, str | None]:
    """`path[:COLUMN]` -> (source, column or None); the source names the benchmark in the report."""
    source, column = spec, None
    if not spec.startswith(HF_PREFIX) and ":" in spec:
        head, _, tail = spec.rpartition(":")
        if head.endswith(_FILE_SUFFIXES) and tail:
            source, column = head, tail
    return source, column


def _file_rows(source: str, column: str | None) -> list[tuple[str, str]]:
    """(row id, text) of a benchmark file: its `id` column, else `<file stem>-<index>`."""
    stem = Path(source).stem if not source.startswith(HF_PREFIX) else source
    out = []
    for i, (where, row, error) in enumerate(iter_source(source)):
        if row is None:
            raise DataError(f"--against {where}: {error}")
        col = column or next((c for c in TEXT_COLUMNS if isinstance(row.get(c), str)), None)
        if col is None or not isinstance(row.get(col), str):
            raise DataError(f"--against {where}: no text column {column or ' / '.join(TEXT_COLUMNS)} "
                            f"(has {sorted(row)}); name one as {source}:COLUMN")
        rid = row.get("id")
        out.append((str(rid) if rid is not None else f"{stem}-{i}", row[col]))
    if not out:
        raise DataError(f"--against {source}: no rows")
    return out


def build_index(against: Sequence[str], n: int = NGRAM) -> NgramIndex:
    """Bundled benchmark names (`all` = every one) and/or benchmark files, indexed together."""
    index = NgramIndex(n)
    for spec in against:
        if spec == "all" or spec in BENCHMARKS:
            for name in resolve_benchmarks([spec], "--against"):
                if name not in index.rows:
                    rows = benchmark_rows(name)
                    index.add(name, [t for _, t in rows], [r for r, _ in rows])
            continue
        source, column = _file_benchmark(spec)
        looks_like_file = source.startswith(HF_PREFIX) or "/" in source or source.endswith(_FILE_SUFFIXES)
        if not looks_like_file:
            resolve_benchmarks([spec], "--against")  # raises: unknown name, listing the known ones
        if not source.startswith(HF_PREFIX) and not resolve_local(source).exists():
            raise DataError(f"--against {source}: no such file")
        rows = _file_rows(source, column)
        index.add(source, [t for _, t in rows], [r for r, _ in rows])
    return index


def field_text(row: dict[str, Any], column: str) -> str | None:
    """A column's text; a chat (`messages`) reads as its turns joined."""
    value = row.get(column)
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(m, dict) for m in value):
        turns = [m["content"] for m in value if isinstance(m.get("content"), str)]
        return "\n".join(turns) if turns else None
    return None


def _count_lines(source: str) -> int | None:
    """Rows of a local jsonl (for the progress bar's total), without parsing it; None otherwise."""
    if source.startswith(HF_PREFIX):
        return None
    path = resolve_local(source)
    if path.suffix != ".jsonl" or not path.is_file():
        return None
    with open(path, "rb") as f:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))


def decontaminate_file(data: str, against: Sequence[str], out: str | Path, *, ngram: int = NGRAM,
                       fields: Sequence[str] = ("problem",), columns: dict[str, str] | None = None,
                       threshold: float = 0.0, report: str | Path | None = None, dedup: bool = True,
                       skip_bad_rows: bool = False, progress: bool | None = None) -> dict[str, Any]:
    """Write `data` without contaminated and duplicate rows to `out` (jsonl) and return the report,
    also written as JSON to `report` (default: beside `out`). `progress`: None = a bar on a terminal
    for large inputs."""
    if ngram < 1:
        raise DataError(f"--ngram must be >= 1, got {ngram}")
    if not 0.0 <= threshold <= 1.0:
        raise DataError(f"--threshold is a share of a row's n-grams, 0..1 (0 = one hit), got {threshold}")
    if not fields:
        raise DataError("--fields: name at least one column to check, e.g. problem")
    out = Path(out)
    if out.suffix != ".jsonl":
        raise DataError(f"--out {out}: write a .jsonl file")
    report_path = Path(report) if report else out.with_name(out.stem + ".report.json")
    columns = dict(columns or {})
    read = [(f, columns.get(f, f)) for f in fields]
    rows_iter = iter_source(data)
    first = next(rows_iter, None)  # a missing or unreadable source fails here, before the index is built
    if first is None:
        raise DataError(f"{data}: no rows")
    rows_iter = itertools.chain([first], rows_iter)
    index = build_index(against, ngram)
    total = _count_lines(data)
    large = total is None or total >= PROGRESS_MIN_ROWS  # unknown length (hub, parquet): assume large
    show = progress if progress is not None else (sys.stderr.isatty() and large)
    from tqdm import tqdm

    per_bench: dict[str, list[dict[str, Any]]] = {name: [] for name in index.rows}
    duplicates: list[dict[str, int]] = []
    skipped: list[dict[str, Any]] = []
    seen: dict[bytes, int] = {}
    n_in = n_kept = 0
    with atomic_write(out) as f, tqdm(rows_iter, total=total, disable=not show, desc="decontaminate",
                                      unit=" rows", file=sys.stderr, mininterval=0.5) as bar:
        for i, (where, row, error) in enumerate(bar):
            n_in += 1
            texts = [(field, field_text(row, col)) for field, col in read] if row is not None else []
            texts = [(field, t) for field, t in texts if t is not None]
            if row is not None and not texts:
                error = (f"none of the columns {[c for _, c in read]} holds text (has {sorted(row)}); "
                         "map one with --columns problem=NAME or choose --fields")
            if error:
                if not skip_bad_rows:
                    raise DataError(f"{where}: {error} (--skip-bad-rows skips such rows)")
                skipped.append({"row": i, "where": where, "reason": error})
                continue
            assert row is not None
            match = _first_match(index, texts, threshold)
            if match is not None:
                field, m = match
                per_bench[m.benchmark].append({"row": i, "where": where, "field": field, "benchmark_id": m.row_id,
                                               "kind": m.kind, "share": round(m.share, 4), "text": m.words})
                continue
            if dedup:
                key = hashlib.blake2b("\x00".join(" ".join(words(t)) for _, t in texts).encode(),
                                      digest_size=16).digest()
                if key in seen:
                    duplicates.append({"row": i, "first": seen[key]})
                    continue
                seen[key] = i
            f.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")
            n_kept += 1
    contaminated = sum(len(v) for v in per_bench.values())
    result = {
        "data": data, "out": str(out), "against": list(against), "ngram": ngram, "fields": list(fields),
        "columns": columns, "threshold": threshold,
        "counts": {"input": n_in, "kept": n_kept, "contaminated": contaminated, "duplicates": len(duplicates),
                   "skipped": len(skipped)},
        "benchmarks": {name: {"rows": index.rows[name], "dropped": len(matches), "matches": matches}
                       for name, matches in per_bench.items()},
        "duplicates": duplicates, "skipped": skipped, "report": str(report_path),
    }
    assert n_kept + contaminated + len(duplicates) + len(skipped) == n_in
    with atomic_write(report_path) as f:
        json.dump(result, f, indent=1, ensure_ascii=False)
        f.write("\n")
    return result


def _first_match(index: NgramIndex, texts: list[tuple[str, str]], threshold: float) -> tuple[str, Match] | None:
    for field, text in texts:
        m = index.match(text, threshold)
        if m is not None:
            return field, m
    return None


def summary(report: dict[str, Any], examples: int = 3) -> str:
    """The few lines printed after a run: counts, then per benchmark its drops and a first few."""
    c = report["counts"]
    rule = "1 hit" if report["threshold"] == 0 else f"share >= {report['threshold']}"
    lines = [f"decontaminate: {c['input']} rows of {report['data']} -> kept {c['kept']} in {report['out']}",
             f"  dropped {c['contaminated']} sharing text with a benchmark ({report['ngram']}-grams of "
             f"{'+'.join(report['fields'])}, {rule}), {c['duplicates']} exact duplicates"
             + (f", {c['skipped']} bad rows" if c["skipped"] else "")]
    for name, b in report["benchmarks"].items():
        lines.append(f"  {name} ({b['rows']} problems): {b['dropped']} dropped")
        for m in b["matches"][:examples]:
            text = m["text"] if len(m["text"]) <= 70 else m["text"][:67] + "..."
            lines.append(f"    row {m['row']} ~ {m['benchmark_id']} ({m['kind']}, {m['field']}): {text!r}")
        if len(b["matches"]) > examples:
            lines.append(f"    ... {len(b['matches']) - examples} more")
    lines.append(f"report: {report['report']}")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="nemo-r1 decontaminate", description="write a dataset without the rows that "
                                "copy a benchmark problem (normalised exact copy or shared word n-grams), and report which")
    p.add_argument("--data", required=True, help="input: .jsonl/.json/.parquet, a dataset folder, or "
                   "hf:owner/name[:config][@split]")
    p.add_argument("--against", required=True, action="append",
                   help=f"comma-separated bundled benchmarks ({', '.join(BENCHMARKS)}; all = every one) and/or "
                        "benchmark files FILE[:COLUMN] (default column: the first of problem, question, prompt; "
                        "row ids from its `id` column); may repeat")
    p.add_argument("--out", required=True, help="output .jsonl: the kept rows, unchanged")
    p.add_argument("--ngram", type=int, default=NGRAM, help="words per n-gram (default %(default)s)")
    p.add_argument("--fields", action="append", help="columns to check, comma-separated (default problem; "
                   "e.g. problem,solution; messages reads a chat's turns)")
    p.add_argument("--columns", action="append", help="FIELD=COLUMN where the file names a field otherwise, "
                   "e.g. problem=question")
    p.add_argument("--threshold", type=float, default=0.0,
                   help="share of a row's n-grams that must be a benchmark's to drop it (default 0 = one hit)")
    p.add_argument("--report", default=None, help="JSON report (default: OUT's name + .report.json)")
    p.add_argument("--keep-duplicates", action="store_true", help="do not drop rows repeating an earlier row")
    p.add_argument("--skip-bad-rows", action="store_true", help="skip (and count) rows that cannot be read")
    p.add_argument("--no-progress", action="store_true")
    return p


def main(args: argparse.Namespace | list[str] | None = None) -> int:
    """Entry point: `args` is the CLI's namespace (raw argv in `rest`) or an argv list."""
    from nemo_r1.console import raw_argv

    argv = raw_argv(args)
    ns = build_parser().parse_args(argv)
    report = decontaminate_file(ns.data, _split(ns.against), ns.out, ngram=ns.ngram,
                                fields=_split(ns.fields) or ["problem"], columns=parse_columns(ns.columns),
                                threshold=ns.threshold, report=ns.report, dedup=not ns.keep_duplicates,
                                skip_bad_rows=ns.skip_bad_rows, progress=False if ns.no_progress else None)
    print(summary(report), flush=True)
    return 0
