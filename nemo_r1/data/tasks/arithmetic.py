"""A generated verifiable task for the CPU GRPO demo: small-number arithmetic with a boxed answer.

Why: SmolLM2-135M-Instruct solves about 1% of GSM8K, so GRPO on GSM8K sees all-zero rewards and
learns nothing. Small arithmetic is solved sometimes (the measured rate at the default difficulty
is in docs/rewards.md), so the accuracy reward has variance within a group from the first step.
Problems are a pure function of the seed: the same seed gives the same file.

`generate`/`write_jsonl` are the raw draw the calibration in docs/rewards.md and tools/bench_grpo.py
measured (i.i.d., repeats possible, no split). Training data goes through the task registry
(`generated:arithmetic`, `write_task`), which keeps the held-out split out of it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

from nemo_r1.data.config import DataConfig
from nemo_r1.data.tasks.registry import write_rows

FEW_SHOT = [
    {"user": "What is 2 + 3?", "assistant": "2 + 3 = 5. The answer is \\boxed{5}."},
    {"user": "What is 9 - 4?", "assistant": "9 - 4 = 5. The answer is \\boxed{5}."},
]
"""Two example turns for `data.few_shot`: without them SmolLM2-135M almost never writes \\boxed{}
(0-20% of completions) even when told to, so accuracy would be ~0 for format reasons alone."""

_OPS = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b}


@dataclass(frozen=True)
class ArithmeticTask:
    """Difficulty knobs of the generated arithmetic problems."""

    ops: str = "+-"
    """Operators to draw from (subset of `+-*`)."""
    max_operand: int = 20
    """Operands are drawn from 1..max_operand (the multiplication operand from 1..max(2, max_operand // 4))."""
    num_operands: int = 2
    """2 gives `a + b`; 3 gives `a + b - c` (evaluated left to right)."""
    nonnegative: bool = True
    """Redraw until the result is >= 0 (a small model handles negatives far worse)."""
    template: str = "What is {expr}?"
    """Problem text; the prompt template adds the boxed-answer instruction."""

    def __post_init__(self) -> None:
        bad = set(self.ops) - set(_OPS)
        if not self.ops or bad:
            raise ValueError(f"ops={self.ops!r}: use a non-empty subset of '+-*'")
        if self.max_operand < 1 or self.num_operands < 2:
            raise ValueError("need max_operand >= 1 and num_operands >= 2")


def _one(rng: random.Random, task: ArithmeticTask) -> tuple[str, int]:
    while True:
        nums = [rng.randint(1, task.max_operand)]
        ops = []
        for _ in range(task.num_operands - 1):
            op = rng.choice(task.ops)
            hi = max(2, task.max_operand // 4) if op == "*" else task.max_operand
            ops.append(op)
            nums.append(rng.randint(1, hi))
        value = nums[0]
        for op, n in zip(ops, nums[1:], strict=True):
            value = _OPS[op](value, n)
        if value >= 0 or not task.nonnegative:
            expr = " ".join([str(nums[0])] + [f"{op} {n}" for op, n in zip(ops, nums[1:], strict=True)])
            return task.template.replace("{expr}", expr), value


def draw(rng: random.Random, task: ArithmeticTask) -> dict[str, str]:
    """One problem row for the task registry."""
    problem, value = _one(rng, task)
    return {"problem": problem, "answer": str(value)}


def generate(n: int, seed: int = 0, task: ArithmeticTask | None = None) -> list[dict[str, str]]:
    """`n` rows `{"id", "problem", "answer"}`, deterministic in (n, seed, task); drawn with
    replacement from both splits (the raw stream, see the module doc)."""
    task = task or ArithmeticTask()
    rng = random.Random(f"nemo-r1-arith-{seed}")
    return [{"id": f"arith-{seed}-{i}", "problem": p, "answer": str(v)} for i, (p, v) in
            enumerate(_one(rng, task) for _ in range(n))]


def write_jsonl(path: str | Path, n: int, seed: int = 0, task: ArithmeticTask | None = None) -> Path:
    """Write `generate(n, seed, task)` as jsonl (id/problem/answer), atomically, and return the path."""
    return write_rows(path, generate(n, seed, task))


def demo_data_config(path: str | Path) -> DataConfig:
    """The data settings the arithmetic task was calibrated with: no instruction suffix, the two
    few-shot turns, the model's own chat template (measured numbers: docs/rewards.md)."""
    return DataConfig(train=str(path), format="problem", prompt_suffix="", few_shot=[dict(s) for s in FEW_SHOT])
