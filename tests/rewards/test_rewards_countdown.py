"""countdown: TinyZero's scheme (0 no equation, 0.1 equation but not a correct use, 1.0 correct),
scored without eval; hostile equations get the format score at once, never an exception or a hang."""

from __future__ import annotations

import time
from fractions import Fraction

import pytest

from nemo_r1.rewards import get_reward
from nemo_r1.rewards.countdown import last_block
from nemo_r1.rewards.equation import EquationError, parse_equation

NUMS, TARGET = [3, 5, 7], 16  # 3 * 7 - 5 = 16


def score(*answers: str, numbers: list[int] = NUMS, target: int = TARGET, **params) -> list[float | None]:
    completions = [f"<think>try things</think>\n<answer>{a}</answer>" for a in answers]
    return get_reward("countdown", **params)(completions, numbers=[numbers] * len(completions),
                                              target=[target] * len(completions))


def test_correct_equations_score_one_whatever_the_order_and_spacing():
    assert score("3 * 7 - 5", "7*3-5", "(3 * 7) - 5", " 3*7 - (5) ") == [1.0, 1.0, 1.0, 1.0]
    # exact division: (5 + 7) / 3 = 4 and 9 / 2 * 2 = 9 are not rounded or floated
    assert score("(5 + 7) / 3", numbers=[3, 5, 7], target=4) == [1.0]
    assert score("9 / 2 * 2", numbers=[2, 2, 9], target=9) == [1.0]
    assert score("7 / 2", numbers=[2, 7], target=3) == [0.1]  # 3.5, not 3


def test_no_equation_scores_zero():
    reward = get_reward("countdown")
    texts = ["3 * 7 - 5 = 16", "<answer>3 * 7 - 5", "<think>x</think><answer>  </answer>", ""]
    assert reward(texts, numbers=[NUMS] * 4, target=[TARGET] * 4) == [0.0, 0.0, 0.0, 0.0]


def test_wrong_malformed_and_misused_numbers_score_the_format_score():
    assert score("3 * 5 + 7") == [0.1]  # wrong value (22)
    assert score("3 * 7 -", "3 7 5", "(3 * 7 - 5", "16", "3 * 7 - 5 = 16") == [0.1] * 5  # malformed
    assert score("3 * 7 - 5 + 5 - 5") == [0.1]  # 16, but 5 reused
    assert score("7 + 3 * 3") == [0.1]  # 16, but 3 reused and 5 missing
    assert score("3 * 7") == [0.1]  # 5 missing
    assert score("3 * 7 - 5 + 0") == [0.1]  # 0 is not a given number
    assert score("3 * 7 - 5", format_score=0.0, correct_score=2.0) == [2.0]
    assert score("3 * 5 + 7", format_score=0.0) == [0.0]


def test_division_by_zero_scores_the_format_score():
    assert score("7 / (5 - 5) + 3", numbers=[3, 5, 5, 7], target=3) == [0.1]
    assert score("3 / 0 * 7 - 5") == [0.1]


def test_disallowed_syntax_scores_the_format_score():
    # unary minus, power, floor division, modulo, floats, names, calls, underscores, complex
    bad = ["-3 + 7 * 5", "3 ** 2 + 7", "7 // 3 + 5", "7 % 3 + 5", "3.0 * 7 - 5", "x * 7 - 5",
           "abs(3) * 7 - 5", "3 * 7 - 5_0", "3j + 7 + 5", "__import__('os')"]
    assert score(*bad) == [0.1] * len(bad)


def test_huge_inputs_are_refused_fast():
    hostile = ["9**9**9", "9**9**9**9", "1" * 10_000, "(" * 5000 + "3" + ")" * 5000,
               "(" * 17 + "3 * 7 - 5" + ")" * 17, "+".join(["1"] * 5000), "3 * 7" + " " * 300 + "- 5"]
    start = time.process_time()
    assert score(*hostile) == [0.1] * len(hostile)
    # a completion of 200,000 unclosed answer tags: linear extraction, no regex backtracking
    assert get_reward("countdown")(["<answer>" * 200_000], numbers=[NUMS], target=[TARGET]) == [0.0]
    assert time.process_time() - start < 1.0
    # nesting within the bound still parses
    assert score("(" * 16 + "3 * 7" + ")" * 16 + " - 5") == [1.0]


def test_the_last_answer_block_counts():
    assert last_block("<answer>1</answer> then <answer>2</answer>") == "2"
    assert last_block("<answer>a<answer>b</answer>") == "b"
    assert last_block("</answer><answer>") is None
    reward = get_reward("countdown")
    assert reward(["<answer>3 * 5 + 7</answer> no wait <answer>3 * 7 - 5</answer>"],
                  numbers=[NUMS], target=[TARGET]) == [1.0]


def test_bad_gold_columns_score_none_and_missing_columns_raise():
    reward = get_reward("countdown")
    good = "<answer>3 * 7 - 5</answer>"
    assert reward([good, good, good], numbers=[NUMS, "3,5,7", []], target=[TARGET, TARGET, TARGET]) == [1.0, None, None]
    assert reward([good], numbers=[NUMS], target=["16"]) == [None]
    with pytest.raises(KeyError, match="needs the column 'numbers'"):
        reward([good], target=[TARGET])
    with pytest.raises(ValueError, match="max_chars"):
        get_reward("countdown", max_chars=0)


def test_parse_equation_reports_why():
    eq = parse_equation("(1 + 2) / 3 * 10")
    assert eq.value == Fraction(10) and eq.numbers == (1, 2, 3, 10)
    for text, why in [("2 ** 3", "Pow is not allowed"), ("-2", "USub is not allowed"), ("1 / (2 - 2)", "division by zero"),
                      ("1" * 201, "longer than 200"), ("((((1))))", "nested deeper than 3"), ("a", "characters outside")]:
        with pytest.raises(EquationError, match=why):
            parse_equation(text, max_depth=3 if text.startswith("((((") else 16)
