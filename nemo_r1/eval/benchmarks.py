"""Problems of the bundled benchmarks (registry in `nemo_r1.data.bundled`; nothing is downloaded).

A benchmark is a local jsonl file plus the names of its columns; `--data FILE` builds the same
thing from any jsonl (or `hf:owner/name[:config][@split]` source) with a column mapping. Every problem gets a stable string id (the file's
`id`/`task_id`, else `<name>-<row>`), because ids key resumption and per-sample seeds.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nemo_r1.data.bundled import BENCHMARKS, Benchmark, data_dir, read_jsonl
from nemo_r1.data.loading import HF_PREFIX, DataError, iter_source, parse_hf_source, resolve_local

CODE_INSTRUCTION = (
    "Write a Python function that solves the task below and passes the example test. "
    "Return only the code in a single ```python code block."
)


@dataclass
class Problem:
    """One row ready for prompting and scoring."""

    id: str
    problem: str
    gold: str | None
    """Gold final answer (math) or None when the row has none; code rows carry tests in `row`."""
    row: dict[str, Any] = field(default_factory=dict)
    """The raw row, for scorers that need more columns (MBPP+ inputs, entry point)."""


def gsm8k_gold(answer: str) -> str | None:
    """The final number of a GSM8K answer (`... #### 1,234` -> `1234`), None if absent."""
    if "####" not in answer:
        return None
    return answer.rsplit("####", 1)[1].strip().replace(",", "") or None


def get_benchmark(name: str) -> Benchmark:
    if name not in BENCHMARKS:
        import difflib

        near = difflib.get_close_matches(name, BENCHMARKS, n=1)
        hint = f"; did you mean {near[0]!r}?" if near else ""
        raise DataError(f"unknown benchmark {name!r}{hint} (known: {', '.join(BENCHMARKS)}); "
                        "or pass --data FILE.jsonl")
    return BENCHMARKS[name]


def load_problems(bench: Benchmark, limit: int | None = None, root: Path | None = None) -> list[Problem]:
    """The benchmark's problems (first `limit` rows), with clear errors for missing columns."""
    problems: list[Problem] = []
    seen: set[str] = set()
    for idx, (where, row) in enumerate(_rows(bench, root)):
        if limit is not None and len(problems) >= limit:
            break
        text = row.get(bench.problem_key)
        if not isinstance(text, str) or not text.strip():
            raise DataError(f"{where}: missing or empty problem column {bench.problem_key!r} "
                            f"(columns: {', '.join(row)}); map it with --columns problem=NAME")
        pid = str(row[bench.id_key]) if bench.id_key and row.get(bench.id_key) is not None else f"{bench.name}-{idx}"
        if pid in seen:
            raise DataError(f"{where}: duplicate id {pid!r}; ids key resumption and must be unique")
        seen.add(pid)
        gold: str | None = None
        if bench.kind == "math":
            if bench.answer_key not in row:
                raise DataError(f"{where}: missing answer column {bench.answer_key!r} "
                                f"(columns: {', '.join(row)}); map it with --columns answer=NAME")
            raw = row[bench.answer_key]
            gold = None if raw is None else str(raw)
            if gold is not None and bench.gsm8k_answer:
                gold = gsm8k_gold(gold)
        problems.append(Problem(id=pid, problem=text, gold=gold, row=row))
    if not problems:
        raise DataError(f"{bench.file}: no rows")
    return problems


def _rows(bench: Benchmark, root: Path | None) -> Iterator[tuple[str, dict[str, Any]]]:
    """(location, row) of a bundled/local jsonl (`file:line`) or of an `hf:` source (`source row N`)."""
    if bench.file.startswith(HF_PREFIX):
        for where, row, error in iter_source(bench.file, split="test"):
            if error or row is None:
                raise DataError(f"{where}: {error}")
            yield where, row
        return
    path = Path(bench.file)
    if not path.is_absolute():
        path = (root or data_dir()) / path
    for lineno, row in read_jsonl(path):
        yield f"{path}:{lineno}", row


def data_benchmark(path: str | Path, columns: dict[str, str] | None = None, kind: str = "math") -> Benchmark:
    """A Benchmark for any jsonl or `hf:` source (`--data`), with `--columns problem=question answer=solution id=uid`."""
    columns = dict(columns or {})
    unknown = set(columns) - {"problem", "answer", "id"}
    if unknown:
        raise DataError(f"--columns: unknown key(s) {sorted(unknown)}; use problem=, answer=, id=")
    source = str(path)
    if source.startswith(HF_PREFIX):  # hf:owner/name[:config][@split]; the split defaults to `test`
        name, _, split = parse_hf_source(source)
        stem, file = name.rstrip("/").split("/")[-1] + (f"_{split}" if split else ""), source
    else:
        p = resolve_local(source)
        stem, file = p.stem, str(p.resolve())
    return Benchmark(
        name=stem,
        file=file,
        kind=kind,
        problem_key=columns.get("problem", "problem"),
        answer_key=columns.get("answer", "answer"),
        id_key=columns.get("id", "id"),
    )


def code_user_message(row: dict[str, Any]) -> str:
    """MBPP+ prompt: the task text (with its one example assert) and the function name to define."""
    task = str(row.get("prompt", "")).strip().strip('"').strip()
    entry = row.get("entry_point")
    tail = f"\nThe function must be named `{entry}`." if entry else ""
    return f"{CODE_INSTRUCTION}\n\n{task}{tail}"
