"""Turn completions into (extracted answer, correct) with the same code the GRPO rewards use.

Eval must agree with training: the answer is the rewards' extraction (last `\\boxed{}` or
`<answer>` tag only, never an unanchored number from the reasoning) and correctness is the
`accuracy` reward (math-verify, gold first, process pool with hard timeouts). A gold that
math-verify cannot parse makes its problem unscorable (`correct=None`), never correct; a sample
whose check timed out counts as wrong. Code (MBPP+) runs in the rewards sandbox.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any


@dataclass
class Graded:
    answer: str | None
    """The extracted final answer (what maj@n votes on); None = extraction failed."""
    correct: bool | None
    """None = the gold does not parse, so this sample cannot be scored."""


def extract_answer(text: str) -> str | None:
    from nemo_r1.rewards.extract import extract_final_answer

    return extract_final_answer(text)


@lru_cache(maxsize=8192)
def gold_parses(gold: str | None) -> bool:
    """Same rule as the accuracy reward: math-verify must produce more than its string fallback."""
    if gold is None or not gold.strip():
        return False
    from math_verify import parse

    text = gold if "\\boxed" in gold else "\\boxed{" + gold.strip() + "}"
    return any(not isinstance(p, str) for p in parse(text))


def grade_math(completions: list[str], golds: list[str | None]) -> list[Graded]:
    """Grade a batch of completions, each against its own gold (one reward call: the pool is used)."""
    from nemo_r1.rewards import get_reward

    scores = get_reward("accuracy")(completions, answer=golds)
    out = []
    for c, g, s in zip(completions, golds, scores, strict=True):
        ok = gold_parses(g)
        out.append(Graded(extract_answer(c), None if not ok else bool(s and s >= 1.0)))
    return out


def grade_code(completions: list[str], rows: list[dict[str, Any]]) -> list[Graded]:
    """MBPP+: a sample is correct when its last ```python block passes every base and plus test in
    the rewards sandbox. The extracted code is the `answer` (maj@n votes on identical programs)."""
    from nemo_r1.rewards import get_reward
    from nemo_r1.rewards.code import extract_code

    columns = {k: [r.get(k) for r in rows] for k in ("entry_point", "canonical_solution", "base_input",
                                                      "plus_input", "atol", "task_id", "prompt")}
    scores = get_reward("code", scoring="binary")(completions, **columns)
    return [Graded(extract_code(c), None if s is None else s >= 1.0) for c, s in zip(completions, scores, strict=True)]
