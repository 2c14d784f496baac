"""The data that ships inside the repository (`data/`) and the registry of benchmark files in it.

The folder is found relative to this package, so a fresh clone works wherever it lives;
`$NEMO_R1_DATA` points elsewhere (a cluster's shared copy). Nothing here downloads anything.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nemo_r1.data.loading import DataError

PROJECT_ROOT = Path(__file__).resolve().parents[2]
"""The checkout (editable install): relative data paths in shipped recipes are relative to it."""


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


def data_dir() -> Path:
    """The bundled data: `$NEMO_R1_DATA` if set, else `data/` at the root of this checkout."""
    env = os.environ.get("NEMO_R1_DATA")
    path = Path(env).expanduser() if env else PROJECT_ROOT / "data"
    if not path.is_dir():
        where = "NEMO_R1_DATA" if env else "the checkout"
        raise DataError(f"bundled data folder {path} (from {where}) does not exist; set NEMO_R1_DATA to "
                        "the folder holding math500.jsonl, gsm8k_train.jsonl, ...")
    return path


def benchmark_path(bench: Benchmark) -> Path:
    path = Path(bench.file)
    return path if path.is_absolute() else data_dir() / path


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


def benchmark_problems(name: str) -> list[str]:
    """The problem texts of one bundled benchmark (what decontamination compares against)."""
    if name not in BENCHMARKS:
        raise DataError(f"unknown benchmark {name!r} (known: {', '.join(BENCHMARKS)})")
    bench = BENCHMARKS[name]
    return [str(row.get(bench.problem_key, "")) for _, row in read_jsonl(benchmark_path(bench))]
