"""Countdown (the TinyZero / mini-deepseek-r1 task): reach a target from a few numbers with + - * /,
each number used exactly once; the answer is the equation inside `<answer>...</answer>`.

The target is built from a random expression over the drawn numbers, so every problem has a
solution (stored as `answer`; the reward accepts any correct equation). Every intermediate value of
that expression is a positive integer, as in the game: a division is drawn only where it is exact.
The numbers are listed sorted, so one multiset and target is one problem text (and one split).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

OPS = "+-*/"
MAX_TRIES = 10_000


@dataclass(frozen=True)
class CountdownTask:
    """Difficulty knobs of the generated countdown problems."""

    min_count: int = 3
    """Fewest numbers in a problem (3-6)."""
    max_count: int = 3
    """Most numbers in a problem (3-6); each problem draws its count uniformly in between."""
    min_value: int = 1
    """Numbers are drawn uniformly from min_value..max_value."""
    max_value: int = 10
    max_target: int = 100
    """Targets lie in 1..max_target (expressions outside are redrawn)."""
    ops: str = OPS
    """Operators the generating expression may use (subset of `+-*/`); the model may use all four."""

    def __post_init__(self) -> None:
        if not 3 <= self.min_count <= self.max_count <= 6:
            raise ValueError(f"min_count={self.min_count}, max_count={self.max_count}: need 3 <= min_count "
                             "<= max_count <= 6")
        if not 1 <= self.min_value <= self.max_value:
            raise ValueError(f"min_value={self.min_value}, max_value={self.max_value}: need 1 <= min_value <= max_value")
        if self.max_target < 1:
            raise ValueError(f"max_target must be >= 1, got {self.max_target}")
        if not self.ops or set(self.ops) - set(OPS):
            raise ValueError(f"ops={self.ops!r}: use a non-empty subset of {OPS!r}")


def _combine(a: int, b: int, op: str) -> tuple[int, int, int] | None:
    """(left, right, value) of `a op b` with the operands ordered so the value is a positive
    integer, or None when no order gives one."""
    if op == "+":
        return a, b, a + b
    if op == "*":
        return a, b, a * b
    hi, lo = max(a, b), min(a, b)
    if op == "-":
        return (hi, lo, hi - lo) if hi > lo else None
    return (hi, lo, hi // lo) if hi % lo == 0 else None


def _expression(rng: random.Random, numbers: list[int], ops: str) -> tuple[str, int] | None:
    """A random full binary expression over `numbers` (each once): (text, value), or None if a
    drawn step has no positive integer value."""
    items = [(str(n), n, True) for n in numbers]  # (text, value, is a bare number)
    while len(items) > 1:
        i, j = rng.sample(range(len(items)), 2)
        (ta, a, atom_a), (tb, b, atom_b) = items[i], items[j]
        op = rng.choice(ops)
        step = _combine(a, b, op)
        if step is None:
            return None
        left, _, value = step
        if left != a:  # `-` and `/` put the larger operand first
            (ta, atom_a), (tb, atom_b) = (tb, atom_b), (ta, atom_a)
        text = f"{ta if atom_a else f'({ta})'} {op} {tb if atom_b else f'({tb})'}"
        items = [it for k, it in enumerate(items) if k not in (i, j)] + [(text, value, False)]
    return items[0][0], items[0][1]


def problem_text(numbers: list[int], target: int) -> str:
    return (f"Using the numbers {sorted(numbers)}, write an equation that equals {target}. "
            "Use + - * / and each number exactly once.")


def draw(rng: random.Random, task: CountdownTask) -> dict[str, object]:
    """One problem row: `problem`, `answer` (one solving equation), `numbers` (sorted), `target`."""
    for _ in range(MAX_TRIES):
        count = rng.randint(task.min_count, task.max_count)
        numbers = sorted(rng.randint(task.min_value, task.max_value) for _ in range(count))
        built = _expression(rng, numbers, task.ops)
        if built is None or not 1 <= built[1] <= task.max_target:
            continue
        equation, target = built
        return {"problem": problem_text(numbers, target), "answer": equation, "numbers": numbers, "target": target}
    raise ValueError(f"{task}: no expression landed in 1..max_target in {MAX_TRIES} tries; widen the knobs")


PROMPT_SUFFIX = ("Think it through inside <think> </think>, then give only the equation inside "
                 "<answer> </answer>, for example <answer> (1 + 2) * 3 </answer>.")

FEW_SHOT = (
    {"user": problem_text([2, 4, 6], 14) + "\n\n" + PROMPT_SUFFIX,
     "assistant": "<think>2 * 4 = 8 and 8 + 6 = 14.</think>\n<answer>2 * 4 + 6</answer>"},
    {"user": problem_text([1, 5, 6], 30) + "\n\n" + PROMPT_SUFFIX,
     "assistant": "<think>5 * 6 = 30 and 30 * 1 = 30.</think>\n<answer>5 * 6 * 1</answer>"},
)
"""Two worked turns: a 135M model copies the answer-tag format from examples far more reliably
than from the instruction alone (as with the arithmetic task). Both problems are in the train split
(a test checks), so no held-out problem is shown with its answer."""
