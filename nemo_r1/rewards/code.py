"""`code`: run the completion's last Python block against the row's tests in the sandbox.

Tests come from a `verification_info` column, either open-r1's
`{"language": "python", "test_cases": [{"type": "stdin_stdout", "input": ..., "output": ...}]}` or
`{"format": "function_call", "entry_point": ..., "inputs": [...], "outputs": [...], "atol": ...,
"time_limits": [...]}` (what `nemo_r1.rewards.mbpp.function_call_info` builds from MBPP+ rows). Raw MBPP+ columns (`entry_point`,
`canonical_solution`, `base_input`, `plus_input`, `atol`) also work: their expected outputs are
computed once by running the canonical solution in the sandbox and cached in memory.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from typing import Any

from nemo_r1.rewards.code_harness import (
    decode,
    function_call_program,
    outputs_match,
    parse_function_results,
    stdout_matches,
)
from nemo_r1.rewards.mbpp import function_call_info
from nemo_r1.rewards.registry import Scores
from nemo_r1.sandbox import Program, SandboxLimits, run_programs

log = logging.getLogger(__name__)
_CODE_BLOCK = re.compile(r"```(?:python|py|python3)?[ \t]*\n(.*?)```", re.DOTALL | re.IGNORECASE)


def extract_code(completion: str) -> str | None:
    """The last fenced ```python block (or unlabeled ``` block); None when there is none."""
    blocks = _CODE_BLOCK.findall(completion)
    code = blocks[-1] if blocks else None
    return code if code and code.strip() else None


@dataclass(frozen=True)
class CodeParams:
    scoring: str = "fraction"
    """`fraction` of tests passed, or `binary` (1.0 only when all pass)."""
    cpu_s: int = 10
    """CPU cap per program (function_call tests also have per-input limits from the reference run)."""
    wall_s: float = 30.0
    """Wall cap per program."""
    memory_mb: int = 1024
    max_parallel: int | None = None
    """Programs at once; None = CPU count."""

    def __post_init__(self) -> None:
        if self.scoring not in ("fraction", "binary"):
            raise ValueError(f"scoring={self.scoring!r} is not one of ['fraction', 'binary']")

    def limits(self) -> SandboxLimits:
        return SandboxLimits(cpu_s=self.cpu_s, wall_s=self.wall_s, memory_mb=self.memory_mb,
                             max_parallel=self.max_parallel, output_bytes=64 << 20, fsize_mb=64)


def _as_info(value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    return json.loads(value) if isinstance(value, str) else dict(value)


def _row_infos(n: int, columns: dict[str, Any]) -> list[dict[str, Any] | None]:
    if columns.get("verification_info") is not None:
        return [_as_info(v) for v in columns["verification_info"]]
    needed = ("entry_point", "canonical_solution", "base_input")
    if all(columns.get(k) is not None for k in needed):
        rows = [{k: (columns[k][i] if columns.get(k) is not None else None)
                 for k in (*needed, "plus_input", "atol", "task_id", "prompt")} for i in range(n)]
        if columns.get("problem") is not None:  # the raw task text (the trainer's `prompt` is rendered)
            for i, row in enumerate(rows):
                row["prompt"] = columns["problem"][i]
        return list(function_call_info(rows))
    raise KeyError("reward 'code' needs a `verification_info` column (open-r1 test_cases or function_call) "
                   "or MBPP+ columns (entry_point, canonical_solution, base_input, plus_input)")


def code(completions: list[str], p: CodeParams, **columns: Any) -> Scores:
    """Fraction (or all-or-nothing) of the row's tests passed by the completion's last ```python block; None if the row has no tests."""
    infos = _row_infos(len(completions), columns)
    programs: list[Program] = []
    plan: list[tuple[int, str, Any]] = []  # (completion index, kind, check data)
    scores: Scores = [0.0] * len(completions)
    for i, (completion, info) in enumerate(zip(completions, infos, strict=True)):
        if info is None:
            scores[i] = None
            continue
        src = extract_code(completion)
        fmt = info.get("format") or "stdin_stdout"
        if fmt == "function_call":
            if not info["inputs"]:
                scores[i] = None
                continue
            if src is None:
                continue
            time_limits = info.get("time_limits") or [float(p.cpu_s)] * len(info["inputs"])
            prog, mark = function_call_program(src, info["entry_point"], info["inputs"], time_limits)
            programs.append(prog)
            plan.append((i, "fc", (mark, info)))
        else:
            cases = [c for c in info.get("test_cases", []) if c.get("type", "stdin_stdout") == "stdin_stdout"]
            if info.get("language", "python") != "python" or not cases:
                scores[i] = None
                continue
            if src is None:
                continue
            for case in cases:
                programs.append(Program(src, str(case["input"])))
                plan.append((i, "io", (str(case["output"]), len(cases))))
    runs = run_programs(programs, p.limits()) if programs else []
    passed: dict[int, list[bool]] = {}
    for (i, kind, data), run in zip(plan, runs, strict=True):
        if kind == "fc":
            mark, info = data
            results = parse_function_results(run, mark, len(info["inputs"]))
            atol = float(info.get("atol") or 0.0)
            passed[i] = [("ok" in r) and outputs_match(decode(r["ok"]), decode(exp), atol)
                         for r, exp in zip(results, info["outputs"], strict=True)]
        else:
            expected, _ = data
            passed.setdefault(i, []).append(run.ok and stdout_matches(run.stdout, expected))
    for i, flags in passed.items():
        frac = sum(flags) / len(flags)
        scores[i] = frac if p.scoring == "fraction" else float(frac == 1.0)
    return scores
