"""Benchmark registry and problem loading from the bundled data (nothing is downloaded).

A benchmark is a local jsonl file plus the names of its columns; `--data FILE` builds the same
thing from any jsonl with a column mapping. Every problem gets a stable string id (the file's
`id`/`task_id`, else `<name>-<row>`), because ids key resumption and per-sample seeds.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CODE_INSTRUCTION = (
    "Write a Python function that solves the task below and passes the example test. "
    "Return only the code in a single ```python code block."
)


@dataclass(frozen=True)
class Benchmark:
    """Where a benchmark's rows live and which columns hold what."""

    name: str
    file: str
    """jsonl path, relative to the data dir unless absolute."""
    kind: str = "math"
    """`math` (math-verify against `answer`) or `code` (MBPP+ tests in the sandbox)."""
    problem_key: str = "problem"
    answer_key: str = "answer"
    id_key: str | None = "id"
    gsm8k_answer: bool = False
    """Gold is the number after `####` (GSM8K keeps a worked rationale before it)."""


BENCHMARKS: dict[str, Benchmark] = {
    b.name: b
    for b in [
        Benchmark("math500", "math500.jsonl"),
        Benchmark("aime24", "aime24.jsonl"),
        Benchmark("amc23", "amc23.jsonl"),
        Benchmark("gsm8k", "gsm8k_test.jsonl", problem_key="question", id_key=None, gsm8k_answer=True),
        Benchmark("minerva", "minerva.jsonl"),
        Benchmark("olympiadbench", "olympiadbench.jsonl"),
        Benchmark("mbppplus", "mbppplus.jsonl", kind="code", problem_key="prompt", answer_key="",
                  id_key="task_id"),
    ]
}


@dataclass
class Problem:
    """One row ready for prompting and scoring."""

    id: str
    problem: str
    gold: str | None
    """Gold final answer (math) or None when the row has none; code rows carry tests in `row`."""
    row: dict[str, Any] = field(default_factory=dict)
    """The raw row, for scorers that need more columns (MBPP+ inputs, entry point)."""


class DataError(ValueError):
    """A benchmark file or row that cannot be used; the message names file, line and fix."""


def data_dir() -> Path:
    """The bundled data: $NEMO_R1_DATA, else `shared/data` next to the repository checkout."""
    env = os.environ.get("NEMO_R1_DATA")
    if env:
        return Path(env)
    repo = Path(__file__).resolve().parents[2]
    for cand in (repo.parent / "shared" / "data", repo / "shared" / "data"):
        if cand.is_dir():
            return cand
    raise DataError(f"benchmark data not found: looked for {repo.parent / 'shared' / 'data'}; "
                    "set NEMO_R1_DATA=/path/to/data (the folder with math500.jsonl, ...)")


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


def read_jsonl(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """(line number, row) pairs of a jsonl file; a broken line is an error naming file and line.

    Hand-written rather than `datasets.load_dataset("json")` so that a bad row reports its line
    number and nothing is written to the datasets cache for a few hundred rows.
    """
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    rows = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{path}:{lineno}: not valid JSON ({e.msg}); one object per line") from None
            if not isinstance(row, dict):
                raise DataError(f"{path}:{lineno}: expected a JSON object, got {type(row).__name__}")
            rows.append((lineno, row))
    return rows


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
