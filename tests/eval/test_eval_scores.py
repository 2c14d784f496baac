"""Score functions against hand-computed values."""

import math

import pytest

from nemo_r1.eval.scores import ProblemSamples, default_ks, majority_correct, pass_at_k, summarize


@pytest.mark.parametrize(
    ("n", "c", "k", "expected"),
    [
        (4, 0, 1, 0.0),
        (4, 1, 1, 0.25),  # c/n
        (4, 2, 2, 1 - 1 / 6),  # 1 - C(2,2)/C(4,2)
        (5, 2, 2, 1 - 3 / 10),  # 1 - C(3,2)/C(5,2)
        (10, 3, 5, 1 - 21 / 252),  # 1 - C(7,5)/C(10,5)
        (4, 3, 2, 1.0),  # n - c < k: any pair has a correct one
        (4, 4, 4, 1.0),
        (4, 1, 4, 1.0),
        (16, 1, 8, 0.5),  # 1 - C(15,8)/C(16,8) = 1 - 8/16
    ],
)
def test_pass_at_k_hand_values(n, c, k, expected):
    assert pass_at_k(n, c, k) == pytest.approx(expected, abs=1e-12)


def test_pass_at_k_large_n_is_stable():
    # 1 - C(1990, 100)/C(2000, 100) ~= 1 - prod((1990-i)/(2000-i)) computed independently in log space
    log_ratio = sum(math.log((1990 - i) / (2000 - i)) for i in range(100))
    assert pass_at_k(2000, 10, 100) == pytest.approx(1 - math.exp(log_ratio), rel=1e-9)


def test_pass_at_k_rejects_bad_arguments():
    with pytest.raises(ValueError, match="k <= n"):
        pass_at_k(4, 1, 5)
    with pytest.raises(ValueError, match="c <= n"):
        pass_at_k(4, 5, 1)


def test_default_ks():
    assert default_ks(1) == [1]
    assert default_ks(4) == [1, 2, 4]
    assert default_ks(6) == [1, 2, 4, 6]


def test_majority_vote():
    assert majority_correct(["3", "4", "3", None], [True, False, True, False]) is True
    assert majority_correct(["4", "4", "3", "3"], [False, False, True, True]) is False  # tie: first seen
    assert majority_correct([None, None], [False, False]) is False
    assert majority_correct(["1", "1"], [None, None]) is None


def test_summarize_hand_values():
    probs = [
        ProblemSamples(correct=[True, True, False, False], answers=["1", "1", "2", None], lengths=[10, 20, 30, 40]),
        ProblemSamples(correct=[False, False, False, True], answers=["5", "5", None, "6"], lengths=[1, 1, 1, 1]),
        ProblemSamples(correct=[None] * 4, answers=["x", "x", "x", "x"], lengths=[2, 2, 2, 2]),
    ]
    s = summarize(probs)
    assert s["problems"] == 3 and s["scored_problems"] == 2 and s["unscorable"] == 1
    assert s["pass@1"] == pytest.approx((0.5 + 0.25) / 2)
    # per-problem values 0.5, 0.25: sample std = 0.1767767, / sqrt(2) = 0.125
    assert s["stderr"] == pytest.approx(0.125)
    assert s["pass@2"] == pytest.approx(((1 - 1 / 6) + 0.5) / 2)  # c=2: 5/6; c=1: 1 - C(3,2)/C(4,2)
    assert s["pass@4"] == pytest.approx(1.0)
    assert s["maj@4"] == pytest.approx(0.5)  # problem 1 majority "1" correct, problem 2 "5" wrong
    assert s["extraction_failure_rate"] == pytest.approx(2 / 12)
    assert s["mean_length"] == pytest.approx((100 + 4 + 8) / 12)


def test_summarize_all_unscorable_reports_nan_not_correct():
    s = summarize([ProblemSamples(correct=[None], answers=["1"], lengths=[3])])
    assert s["unscorable"] == 1 and math.isnan(s["pass@1"])
