"""Problems of the bundled benchmarks (registry in `nemo_r1.data.bundled`; nothing is downloaded).

A benchmark is a local jsonl file plus the names of its columns; `--data FILE` builds the same
thing from any jsonl with a column mapping. Every problem gets a stable string id (the file's
`id`/`task_id`, else `<name>-<row>`), because ids key resumption and per-sample seeds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nemo_r1.data.bundled import BENCHMARKS, Benchmark, data_dir, read_jsonl
from nemo_r1.data.loading import DataError

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
    path = Path(bench.file)
    if not path.is_absolute():
        path = (root or data_dir()) / path
    problems: list[Problem] = []
    seen: set[str] = set()
    for idx, (lineno, row) in enumerate(read_jsonl(path)):
        if limit is not None and len(problems) >= limit:
            break
        where = f"{path}:{lineno}"
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
        raise DataError(f"{path}: no rows")
    return problems


def data_benchmark(path: str | Path, columns: dict[str, str] | None = None, kind: str = "math") -> Benchmark:
    """A Benchmark for any jsonl (`--data`), with `--columns problem=question answer=solution id=uid`."""
    columns = dict(columns or {})
    unknown = set(columns) - {"problem", "answer", "id"}
    if unknown:
        raise DataError(f"--columns: unknown key(s) {sorted(unknown)}; use problem=, answer=, id=")
    p = Path(path)
    return Benchmark(
        name=p.stem,
        file=str(p.resolve()),
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
