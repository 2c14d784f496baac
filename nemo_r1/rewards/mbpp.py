"""MBPP+ rows -> `function_call` test info (inputs, expected outputs, per-input time limits).

Two things the raw rows do not give directly:
- Argument types. JSON has no tuples or complex numbers, so MBPP+ stores `(9, 10)` as `[9, 10]`
  and `1j` as `"1j"`; run as-is, canonical solutions that do `tup + (x,)` or `a + b` on complex
  numbers fail. The example call in the row's prompt (`assert add_lists([5, 6, 7], (9, 10)) == ...`)
  shows the intended types, so each argument is converted to the shape of that example.
- Expected outputs: the canonical solution is run in the sandbox on every input, with a per-input
  time limit; the measured time sets the candidate's limit for that input (EvalPlus-style), and
  inputs on which the canonical solution fails or exceeds `max_input_s` are dropped (they are not
  valid tests within the budget; the count is logged).
"""

from __future__ import annotations

import ast
import hashlib
import json
import logging
from dataclasses import dataclass
from typing import Any

from nemo_r1.rewards.code_harness import encode_value, function_call_program, parse_function_results
from nemo_r1.sandbox import SandboxLimits, run_programs

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Shape:
    kind: str  # "tuple" | "list" | "num" | "any"
    elts: tuple[_Shape, ...] = ()


def _shape(node: ast.AST) -> _Shape:
    if isinstance(node, ast.Tuple | ast.List):
        return _Shape("tuple" if isinstance(node, ast.Tuple) else "list", tuple(_shape(e) for e in node.elts))
    if isinstance(node, ast.Constant) and type(node.value) in (int, float, complex):
        return _Shape("num")
    if isinstance(node, ast.UnaryOp | ast.BinOp):  # -3, 1+2j
        parts = [node.operand] if isinstance(node, ast.UnaryOp) else [node.left, node.right]
        if all(_shape(p).kind == "num" for p in parts):
            return _Shape("num")
    return _Shape("any")


def example_shapes(prompt: str, entry_point: str) -> list[_Shape] | None:
    """Argument shapes of the first call to `entry_point` in the prompt's examples, or None."""
    body = prompt.strip().strip('"').strip()
    for line in body.splitlines():
        if entry_point not in line:
            continue
        try:
            tree = ast.parse(line.strip())
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == entry_point:
                return [_shape(a) for a in node.args]
    return None


def _to_number(s: str) -> Any:
    for conv in (int, float, complex):
        try:
            return conv(s)
        except ValueError:
            continue
    return s


def conform(value: Any, shape: _Shape) -> Any:
    """Convert a JSON-decoded argument to the example's shape (lists -> tuples, "1j" -> 1j)."""
    if isinstance(value, list) and shape.kind in ("tuple", "list"):
        seq = [e for e in shape.elts if e.kind in ("tuple", "list")]
        scalar = next((e for e in shape.elts if e.kind == "num"), _Shape("any"))
        # Nested lists follow the example's nested sequence, or the same shape again (self-similar data).
        items = [conform(v, seq[0] if seq else shape) if isinstance(v, list) else conform(v, scalar)
                 for v in value]
        return tuple(items) if shape.kind == "tuple" else items
    if isinstance(value, str) and shape.kind == "num":
        return _to_number(value)
    return value


def conform_inputs(row: dict[str, Any]) -> list[list[Any]]:
    inputs = list(row.get("base_input") or []) + list(row.get("plus_input") or [])
    shapes = example_shapes(row.get("prompt") or "", row["entry_point"])
    if not shapes:
        return inputs
    return [[conform(a, shapes[k]) if k < len(shapes) else a for k, a in enumerate(args)] for args in inputs]


@dataclass(frozen=True)
class ReferenceLimits:
    max_input_s: float = 2.0
    """Inputs on which the canonical solution needs more CPU seconds are dropped."""
    time_factor: float = 4.0
    """A candidate gets time_factor x the canonical CPU time per input ..."""
    min_input_s: float = 0.5
    """... but at least this much."""


_CACHE: dict[str, dict[str, Any]] = {}


def function_call_info(rows: list[dict[str, Any]], ref: ReferenceLimits | None = None,
                       limits: SandboxLimits | None = None) -> list[dict[str, Any]]:
    """Test info for MBPP+ rows (cached per row content): run each canonical solution once."""
    ref = ref or ReferenceLimits()
    keys, todo = [], []
    for i, row in enumerate(rows):
        inputs = [[encode_value(a) for a in args] for args in conform_inputs(row)]
        blob = json.dumps([row["entry_point"], row["canonical_solution"], inputs, ref.__dict__], sort_keys=True)
        key = hashlib.sha256(blob.encode()).hexdigest()
        keys.append(key)
        if key not in _CACHE:
            todo.append((i, key, inputs))
    progs = [function_call_program(rows[i]["canonical_solution"], rows[i]["entry_point"], inputs,
                                   [ref.max_input_s] * len(inputs)) for i, _, inputs in todo]
    budget = max((len(x) for _, _, x in todo), default=0) * ref.max_input_s + 10
    limits = limits or SandboxLimits(cpu_s=int(budget) + 1, wall_s=budget, output_bytes=64 << 20, fsize_mb=64)
    runs = run_programs([p for p, _ in progs], limits)
    for (i, key, inputs), (_, mark), run in zip(todo, progs, runs, strict=True):
        results = parse_function_results(run, mark, len(inputs))
        good = [(x, r) for x, r in zip(inputs, results, strict=True) if "ok" in r]
        if len(good) < len(inputs):
            errors = sorted({r["error"] for r in results if "error" in r})
            log.info("mbpp: canonical solution of %s failed on %d/%d inputs (%s); dropped",
                     rows[i].get("task_id", f"row {i}"), len(inputs) - len(good), len(inputs), ", ".join(errors))
        _CACHE[key] = {
            "format": "function_call", "entry_point": rows[i]["entry_point"],
            "inputs": [x for x, _ in good], "outputs": [r["ok"] for _, r in good],
            "time_limits": [max(ref.min_input_s, ref.time_factor * r["t"]) for _, r in good],
            "atol": float(rows[i].get("atol") or 0.0), "dropped": len(inputs) - len(good),
        }
    return [_CACHE[k] for k in keys]
