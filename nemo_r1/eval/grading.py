"""Turn completions into (extracted answer, correct) with the same code the GRPO rewards use.

Eval must agree with training: the answer is the rewards' extraction (last `\\boxed{}` or
`<answer>` tag only, never an unanchored number from the reasoning) and correctness is the
`accuracy` reward (math-verify, gold first, process pool with hard timeouts). A gold that
math-verify cannot parse makes its problem unscorable (`correct=None`), never correct; a sample
whose check timed out counts as wrong. Code (MBPP+) runs in the rewards sandbox.
"""

from __future__ import annotations

import re
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
    scores = _accuracy()(completions, answer=golds)
    out = []
    for c, g, s in zip(completions, golds, scores, strict=True):
        ok = gold_parses(g)
        out.append(Graded(extract_answer(c), None if not ok else bool(s and s >= 1.0)))
    return out


def _accuracy() -> Any:
    try:
        from nemo_r1.rewards import get_reward
    except ImportError:  # TODO(rewards, issue 5): remove once nemo_r1.rewards exports get_reward
        from nemo_r1.rewards.accuracy import AccuracyParams, accuracy

        return lambda completions, **cols: accuracy(completions, AccuracyParams(), **cols)
    return get_reward("accuracy")


_CODE_BLOCK = re.compile(r"```(?:python|py|Python)?[ \t]*\n(.*?)```", re.DOTALL)


def extract_code(text: str) -> str | None:
    """The last fenced code block, else the text itself when it already looks like code."""
    blocks = _CODE_BLOCK.findall(text)
    if blocks:
        return blocks[-1].strip() or None
    return text.strip() if re.search(r"^\s*def \w+\(", text, re.MULTILINE) else None


def grade_code(completions: list[str], rows: list[dict[str, Any]]) -> list[Graded]:
    """MBPP+: a sample is correct when its code passes every base and plus test in the sandbox.

    The extracted code is the `answer` (maj@n then votes on identical programs).
    """
    from nemo_r1.rewards import get_reward

    codes = [extract_code(c) for c in completions]
    reward = get_reward("code", binary=True)
    columns = {k: [r.get(k) for r in rows] for k in ("entry_point", "base_input", "plus_input", "atol",
                                                      "canonical_solution", "task_id")}
    scores = reward([c or "" for c in codes], **columns)
    return [Graded(c, None if s is None else bool(c is not None and s >= 1.0))
            for c, s in zip(codes, scores, strict=True)]
