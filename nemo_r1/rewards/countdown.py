"""`countdown`: the equation in the last `<answer>...</answer>` must use each given number exactly
once and equal the target.

Score scheme: TinyZero's `compute_score` for countdown (format_score=0.1, score=1.0):
- 0.0 when the completion has no `<answer>...</answer>` with an equation in it;
- `format_score` (0.1) when it has one that is malformed, not allowed (see equation.py), uses the
  numbers wrongly (a number reused, missing or not given), divides by zero, or is wrong;
- `correct_score` (1.0) when it is right.
Like TinyZero, the think tags are not checked here (the `format` reward does that). Columns:
`numbers` (the given integers) and `target`.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from typing import Any

from nemo_r1.rewards.equation import EquationError, parse_equation
from nemo_r1.rewards.registry import Scores, require_column

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CountdownParams:
    format_score: float = 0.1
    """An equation was given but it is not a correct use of the numbers."""
    correct_score: float = 1.0
    max_chars: int = 200
    """Longer equations are not parsed (they score format_score)."""
    max_depth: int = 16
    """Deeper parenthesis nesting is not parsed (it scores format_score)."""

    def __post_init__(self) -> None:
        if self.max_chars < 1 or self.max_depth < 1:
            raise ValueError(f"max_chars and max_depth must be >= 1, got {self.max_chars}, {self.max_depth}")


def last_block(text: str, open_tag: str = "<answer>", close_tag: str = "</answer>") -> str | None:
    """Content of the last `open_tag...close_tag` pair, or None.

    Hand-written with rfind (not a lazy regex): a regex rescans to the end from every unclosed
    opening tag, quadratic on a long completion full of them; this is linear.
    """
    end = text.rfind(close_tag)
    if end < 0:
        return None
    start = text.rfind(open_tag, 0, end)
    return None if start < 0 else text[start + len(open_tag):end]


def _valid_gold(numbers: Any, target: Any) -> bool:
    return (isinstance(numbers, list | tuple) and len(numbers) > 0 and all(type(n) is int for n in numbers)
            and type(target) is int)


def score_countdown(completion: str, numbers: list[int], target: int, p: CountdownParams) -> float:
    """One completion's score (the module doc gives the scheme)."""
    equation = last_block(completion)
    if equation is None or not equation.strip():
        return 0.0
    try:
        parsed = parse_equation(equation, p.max_chars, p.max_depth)
    except EquationError:
        return p.format_score
    if Counter(parsed.numbers) != Counter(numbers) or parsed.value != target:
        return p.format_score
    return p.correct_score


def countdown(completions: list[str], p: CountdownParams, **columns: Any) -> Scores:
    """TinyZero's countdown score: 0 without an <answer> equation, 0.1 if wrong, 1.0 if it uses each number once and hits the target."""
    numbers, targets = require_column("countdown", columns, "numbers"), require_column("countdown", columns, "target")
    scores: Scores = []
    for completion, nums, target in zip(completions, numbers, targets, strict=True):
        if not _valid_gold(nums, target):
            log.warning("countdown: numbers=%r target=%r are not a list of integers and an integer; scored None",
                        str(nums)[:100], str(target)[:100])
            scores.append(None)
            continue
        scores.append(score_countdown(completion, nums, target, p))
    return scores
