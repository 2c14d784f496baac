"""format, tag_count, reasoning_steps, cosine, length, soft_overlong, repetition: hand-checked values."""

from __future__ import annotations

import math

import pytest

from nemo_r1.rewards import get_reward

GOOD_TAG = "<think>\nadd 5 and 7\n</think>\n<answer>\n12\n</answer>"
GOOD_BOXED = "<think>add 5 and 7</think>\nSo the total is \\boxed{12}."


def test_format_answer_tag_mode():
    fmt = get_reward("format")
    comps = [GOOD_TAG, "<answer>12</answer>", "<think>x</think>", "<think></think><answer>1</answer>",
             "<think>a</think><think>b</think><answer>1</answer>", "<think>a</think><answer>1</answer> extra",
             "<think>a</think><answer> </answer>", GOOD_BOXED]
    assert fmt(comps) == [1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]


def test_format_boxed_mode():
    fmt = get_reward("format", mode="boxed")
    assert fmt([GOOD_BOXED, GOOD_TAG, "\\boxed{12}", "<think>x</think> \\boxed{}"]) == [1.0, 0.0, 0.0, 0.0]


def test_format_with_prefilled_think():
    # R1-Distill templates end the prompt with "<think>\n": the completion has no opening tag.
    completion = "add 5 and 7\n</think>\n<answer>12</answer>"
    prompts = ["<|im_start|>assistant\n<think>\n", "<|im_start|>assistant\n"]
    assert get_reward("format")([completion, completion], prompt=prompts) == [1.0, 0.0]
    assert get_reward("format", think_prefilled=True)([completion]) == [1.0]
    assert get_reward("format")([completion]) == [0.0]  # no prompt given, not forced: no opening tag
    # a completion that repeats the tag after a prefill is not double-counted
    assert get_reward("format", think_prefilled=True)([GOOD_TAG]) == [1.0]
    assert get_reward("tag_count")([completion], prompt=prompts[:1]) == [1.0]


def test_tag_count_partial_credit():
    tc = get_reward("tag_count")
    assert tc([GOOD_TAG, "<think>a</think>", "<think><think></think>", "nothing"]) == [1.0, 0.5, 0.25, 0.0]
    assert get_reward("tag_count", mode="boxed")(["<think>a</think> \\boxed{1}"]) == [1.0]


def test_reasoning_steps():
    rs = get_reward("reasoning_steps")
    text3 = "Step 1: read.\nStep 2: add.\nStep 3: check."
    assert rs([text3, "1. a\n2. b", "First, x. Next, y. Finally, z.", "then we add and then stop", ""]) == \
        [1.0, 2 / 3, 1.0, 0.0, 0.0]


def test_cosine_ordering_and_clamp():
    cos = get_reward("cosine", max_len=100)
    comps = ["\\boxed{3}", "\\boxed{3}", "\\boxed{4}", "\\boxed{4}", "\\boxed{3}", "\\boxed{4}"]
    lengths = [10, 90, 10, 90, 500, 500]
    r = cos(comps, answer=["3"] * 6, completion_lengths=lengths)
    correct_short, correct_long, wrong_short, wrong_long, correct_over, wrong_over = r
    assert correct_short > correct_long > wrong_long > wrong_short
    assert correct_short == pytest.approx(0.5 + 0.5 * 0.5 * (1 + math.cos(math.pi * 0.1)))
    # past max_len the value stays at the end of the range (unclamped cos() would turn back up)
    assert correct_over == pytest.approx(0.5) and wrong_over == pytest.approx(-0.5)
    assert all(-1.0 <= x <= 1.0 for x in r)


def test_cosine_units_and_unscorable():
    cos = get_reward("cosine", max_len=100)
    with pytest.raises(KeyError, match="completion_lengths"):
        cos(["\\boxed{3}"], answer=["3"])
    assert cos(["\\boxed{3}"], answer=["\\frac{"], completion_lengths=[5]) == [None]
    chars = get_reward("cosine", max_len=10, unit="chars")(["\\boxed{3}" + " " * 100], correct=[1.0])
    assert chars == [pytest.approx(0.5)]


def test_length_is_group_relative():
    ln = get_reward("length")
    lengths = [10, 20, 30, 100, 100, 40]
    correct = [1.0, 0.0, 1.0, 1.0, 1.0, None]
    out = ln(["x"] * 6, correct=correct, completion_lengths=lengths, group_ids=[0, 0, 0, 1, 1, 1])
    # group 0: min 10, max 30 -> lambda 0.5, 0, -0.5; wrong answers are capped at 0
    assert out[:3] == [0.5, 0.0, -0.5]
    # group 1: lengths 100, 100, 40 -> min 40, max 100; both correct at the max length get -0.5
    assert out[3:] == [-0.5, -0.5, None]
    # without grouping information it refuses to treat the batch as one group
    with pytest.raises(KeyError, match="group_ids"):
        ln(["x"], correct=[1.0], completion_lengths=[3])
    # grouping by identical prompts works too
    assert ln(["a", "b"], correct=[1.0, 1.0], completion_lengths=[5, 5], prompt=["p", "p"]) == [0.0, 0.0]


def test_soft_overlong_boundaries():
    so = get_reward("soft_overlong", max_len=100, cache_len=20)
    assert so(["x"] * 5, completion_lengths=[50, 80, 90, 100, 150]) == [0.0, 0.0, -0.5, -1.0, -1.0]
    with pytest.raises(ValueError, match="cache_len"):
        get_reward("soft_overlong", max_len=10, cache_len=20)


def test_repetition_penalty():
    rep = get_reward("repetition", ngram_size=2, max_penalty=-1.0)
    out = rep(["a b c d", "a b a b a b", "short", ""])
    assert out[0] == 0.0
    assert out[1] == pytest.approx(-(1 - 2 / 5))  # 5 bigrams, 2 distinct
    assert out[2:] == [0.0, 0.0]
