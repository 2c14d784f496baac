"""`accuracy` against direct math-verify on all 500 MATH-500 gold answers.

Each gold, boxed in a completion, must score 1.0 against itself; against other problems' golds
(three fixed offsets, 1,500 pairs) it must score 0.0 except for true equivalents. Every score is
also compared with a direct `verify(parse(gold), parse(completion))`; docs/rewards.md explains the
equivalent pairs found.
"""

from __future__ import annotations

import json

import pytest
from math_verify import parse, verify

from nemo_r1.data.bundled import data_dir
from nemo_r1.rewards import get_reward

GOLDS = [json.loads(line)["answer"] for line in open(data_dir() / "math500.jsonl", encoding="utf-8")]
OFFSETS = (1, 7, 50)
# Direct math-verify's timeouts are wall-clock alarms; generous ones keep CPU contention from
# turning slow-but-equal answers into 0 on the reference side.
T = 20
# Different strings that are the same answer (explained in docs/rewards.md).
TRUE_EQUIVALENTS = {(22, 23): "'5' vs 'x=5': an equation x = 5 is read as its value 5"}


def completion(gold: str) -> str:
    return f"The final answer is $\\boxed{{{gold}}}$."


@pytest.fixture(scope="module")
def parsed_golds():
    return [parse("\\boxed{" + g + "}", parsing_timeout=T) for g in GOLDS]


@pytest.fixture(scope="module")
def acc():
    return get_reward("accuracy", workers=2)  # its budget is CPU time: no load-dependent timeouts


def test_every_gold_scores_one_against_itself(acc, parsed_golds):
    assert len(GOLDS) == 500
    scores = acc([completion(g) for g in GOLDS], answer=GOLDS)
    assert [(i, GOLDS[i]) for i, s in enumerate(scores) if s != 1.0] == []
    direct = [float(verify(parsed_golds[i], parse(completion(g), parsing_timeout=T), timeout_seconds=T))
              for i, g in enumerate(GOLDS)]
    disagreements = [(i, GOLDS[i]) for i in range(500) if direct[i] != scores[i]]
    assert disagreements == []


def test_other_problems_answers_score_zero_except_true_equivalents(acc, parsed_golds):
    pairs = [(i, (i + k) % 500) for k in OFFSETS for i in range(500)]
    scores = acc([completion(GOLDS[j]) for _, j in pairs], answer=[GOLDS[i] for i, _ in pairs])
    matched = {(i, j) for (i, j), s in zip(pairs, scores, strict=True) if s != 0.0}
    same_string = {(i, j) for i, j in matched if GOLDS[i].strip() == GOLDS[j].strip()}
    assert matched - same_string == set(TRUE_EQUIVALENTS)
    assert len(same_string) == 8  # problems that share an answer such as "3" or "16"
    direct = [float(verify(parsed_golds[i], parse(completion(GOLDS[j]), parsing_timeout=T), timeout_seconds=T))
              for i, j in pairs]
    assert [p for p, d, s in zip(pairs, direct, scores, strict=True) if d != s] == []
