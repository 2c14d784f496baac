"""`accuracy`: extraction, math-verify equivalence, the open-r1/TRL bugs, the pool and its limits."""

from __future__ import annotations

import logging
import time

import pytest

from nemo_r1.rewards import get_reward
from nemo_r1.rewards.extract import extract_final_answer
from nemo_r1.rewards.pool import TIMED_OUT, ScoringPool

acc = get_reward("accuracy", workers=0)


@pytest.mark.parametrize("text, expected", [
    ("so the answer is \\boxed{12}.", "12"),
    ("\\boxed{1} then corrected: \\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),
    ("nested \\boxed{\\sqrt{x^{2}+1}} end", "\\sqrt{x^{2}+1}"),
    ("<think>maybe \\boxed{3}</think><answer>4</answer>", "4"),
    ("<answer>\\boxed{5}</answer>", "5"),
    ("<answer>7</answer> later \\boxed{8}", "8"),
    ("\\boxed 9 is it", "9"),
    ("x = 3, so 3", None),
    ("unclosed \\boxed{12", None),
    ("\\boxed{}", None),
])
def test_extract_final_answer(text, expected):
    assert extract_final_answer(text) == expected


def test_hand_checked_scores():
    comps = ["\\boxed{0.5}", "\\boxed{\\frac{2}{4}}", "\\boxed{1/3}", "<answer>x^2+2x+1</answer>",
             "\\boxed{(x+1)^2}", "\\boxed{13}", "The answer is 12.", "\\boxed{\\text{(C)}}", "\\boxed{3, 5}"]
    golds = ["\\frac{1}{2}", "0.5", "\\frac{1}{3}", "(x+1)^2", "x^2+2x+1", "12", "12", "C", "\\{5, 3\\}"]
    assert acc(comps, answer=golds) == [1.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 1.0, 1.0]


def test_unparseable_gold_is_none_with_a_warning_never_one(caplog):
    # open-r1 scored 1.0 when the gold failed to parse, rewarding any completion.
    with caplog.at_level(logging.WARNING, logger="nemo_r1.rewards.accuracy"):
        scores = acc(["\\boxed{5}", "anything", "\\boxed{}"], answer=["\\frac{", "", None])
    assert scores == [None, None, None]
    assert "does not parse" in caplog.text


def test_gold_goes_first_in_verify():
    # math-verify is asymmetric: an inequality gold accepts the interval answer, not the reverse.
    # A swapped call (TRL/open-r1 once passed the answer first) flips both results.
    assert acc(["\\boxed{[1,2]}"], answer=["1 \\le x \\le 2"]) == [1.0]
    assert acc(["\\boxed{1 \\le x \\le 2}"], answer=["[1,2]"]) == [0.0]


def test_unanchored_numbers_do_not_count():
    # Direct math-verify on the whole text would take "3" from the reasoning; only a final answer counts.
    assert acc(["I think it is 3 but I am not sure"], answer=["3"]) == [0.0]


def test_pool_matches_in_process_scoring():
    comps = [f"\\boxed{{{i % 7}}}" for i in range(40)]
    golds = [str(i % 5) for i in range(40)]
    pooled = get_reward("accuracy", workers=2, min_pool_batch=1)(comps, answer=golds)
    assert pooled == acc(comps, answer=golds)
    assert sum(pooled) == sum(1 for i in range(40) if i % 7 == i % 5)


def test_pool_hard_timeout_scores_only_the_hung_item():
    pool = ScoringPool(workers=2, hard_timeout_s=1.0)
    try:
        t0 = time.monotonic()
        out = pool.map(time.sleep, [0, 0, 30, 0, 0])
        assert out[:2] == [None, None] and out[2] is TIMED_OUT and out[3:] == [None, None]
        assert time.monotonic() - t0 < 10
        assert pool.map(abs, [-1, -2]) == [1, 2]  # the pool was rebuilt
    finally:
        pool.close()


def test_accuracy_hard_timeout_scores_a_costly_answer_zero():
    fn = get_reward("accuracy", workers=1, min_pool_batch=1, hard_timeout_s=1.0)
    assert fn(["\\boxed{1}"], answer=["1"]) == [1.0]  # start the pool: its first item has a start-up grace
    # 9^(9^(9^9)) keeps sympy busy for seconds (its 5 s CPU budget ends it, past the 1 s wall limit).
    t0 = time.monotonic()
    scores = fn(["\\boxed{9^{9^{9^{9}}}}", "\\boxed{2}"], answer=["3", "2"])
    assert time.monotonic() - t0 < 15
    assert scores == [0.0, 1.0]  # the same 0.0 as the CPU budget gives (next test)


def test_cpu_budget_scores_costly_answers_zero_and_ignores_machine_load():
    t0 = time.process_time()
    fn = get_reward("accuracy", workers=0, cpu_timeout_s=0.5)
    assert fn(["\\boxed{9^{9^{9^{9}}}}", "\\boxed{2}"], answer=["3", "2"]) == [0.0, 1.0]
    assert time.process_time() - t0 < 5  # stopped by the CPU budget, not by running to the end
    with pytest.raises(ValueError, match="cpu_timeout_s"):
        get_reward("accuracy", cpu_timeout_s=0)
