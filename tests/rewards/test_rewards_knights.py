"""knights_knaves: Logic-RL's scheme, format +1/-1 plus answer +2 right / -1.5 wrong / -2 unreadable
(also -2 when the format is wrong): totals 3, -0.5, -1 and -3, by hand."""

from __future__ import annotations

import pytest

from nemo_r1.rewards import get_reward
from nemo_r1.rewards.knights import parse_gold, read_roles, structure_ok

GOLD = "(1) Zoe is a knight\n(2) Ben is a knave\n(3) Clara is a knight"
RIGHT = "(1) Zoe is a knight\n(2) Ben is a knave\n(3) Clara is a knight"


def score(*completions: str, gold: str = GOLD, **params) -> list[float | None]:
    return get_reward("knights_knaves", **params)(list(completions), answer=[gold] * len(completions))


def wrap(answer: str) -> str:
    return f"<think>Suppose Zoe is a knight ...</think>\n<answer>{answer}</answer>"


def test_correct_answer_scores_three():
    assert score(wrap(RIGHT)) == [3.0]
    # order, case and a sentence instead of lines do not matter; each role is read by name
    assert score(wrap("(1) Clara is a knight\n(2) zoe is a Knight\n(3) Ben is a knave")) == [3.0]
    assert score(wrap("Zoe is a knight, Ben is a knave and Clara is a knight.")) == [3.0]


def test_one_person_wrong_scores_minus_half():
    assert score(wrap("(1) Zoe is a knight\n(2) Ben is a knight\n(3) Clara is a knight")) == [-0.5]
    assert score(wrap("(1) Zoe is a knave\n(2) Ben is a knight\n(3) Clara is a knave")) == [-0.5]


def test_missing_person_or_unreadable_answer_scores_minus_one():
    assert score(wrap("(1) Zoe is a knight\n(2) Ben is a knave")) == [-1.0]  # Clara missing
    assert score(wrap("(1) Zoe is a knight\n(2) Ben is a knave\n(3) Clara is a knight or a knave")) == [-1.0]
    assert score(wrap("I cannot tell.")) == [-1.0]
    assert score(wrap("(1) Zoe is a knight\n(2) Ben is a knave\n(3) Clara is a knight\n(4) Zoe is a knave")) == [-1.0]
    assert score(wrap(RIGHT + "\n" * 5000), max_chars=100) == [-1.0]  # too long to read


def test_bad_format_scores_minus_three():
    bad = [RIGHT, f"<answer>{RIGHT}</answer>", f"<think>x</think>{RIGHT}",
           f"<answer>{RIGHT}</answer><think>x</think>", f"<think>a</think><think>b</think><answer>{RIGHT}</answer>",
           f"<think>x</think><answer>{RIGHT}</answer><answer>{RIGHT}</answer>", f"<think>x<answer>{RIGHT}</answer></think>"]
    assert score(*bad) == [-3.0] * len(bad)


def test_prefilled_think_counts_as_the_opening_tag():
    completion = f"Suppose ...</think>\n<answer>{RIGHT}</answer>"
    reward = get_reward("knights_knaves")
    prompts = ["<|im_start|>assistant\n<think>\n", "<|im_start|>assistant\n"]
    assert reward([completion, completion], answer=[GOLD, GOLD], prompt=prompts) == [3.0, -3.0]
    assert score(completion, think_prefilled=True) == [3.0]
    assert score(wrap(RIGHT), think_prefilled=True) == [3.0]  # an opening tag after a prefill is not doubled


def test_custom_scores_and_unparseable_gold():
    assert score(wrap(RIGHT), wrap("no"), "no", format_score=0.5, correct_score=1.0, unreadable_score=0.0) == [1.5, 0.5, -0.5]
    assert score(wrap(RIGHT), gold="Zoe: knight") == [None]
    assert score(wrap(RIGHT), gold="(1) Zoe is a knight\n(2) Zoe is a knave") == [None]
    with pytest.raises(KeyError, match="needs the column 'answer'"):
        get_reward("knights_knaves")([wrap(RIGHT)])


def test_helpers():
    assert parse_gold(GOLD) == {"Zoe": "knight", "Ben": "knave", "Clara": "knight"}
    assert read_roles("Ben is a knave. Zoe is a knight.", ["Zoe", "Ben"]) == {"Zoe": "knight", "Ben": "knave"}
    assert read_roles("Benjamin is a knave. Zoe is a knight.", ["Zoe", "Ben"]) is None  # a name is a whole word
    assert structure_ok("<think>a</think> <answer>b</answer>") and not structure_ok("<think>a</think>")
