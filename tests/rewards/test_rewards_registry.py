"""Registry and weighted combination."""

from __future__ import annotations

import re

import pytest

import nemo_r1.rewards as rewards_pkg
from nemo_r1.rewards import REWARDS, RewardSpec, combine_rewards, get_reward, reward_names
from nemo_r1.rewards.registry import NoParams, RewardRegistry


def test_registry_refuses_duplicates_and_non_dataclass_params():
    reg = RewardRegistry()
    reg.add("x", lambda c, p, **k: [1.0] * len(c))
    with pytest.raises(ValueError, match="already registered"):
        reg.add("x", lambda c, p, **k: [0.0] * len(c))
    with pytest.raises(TypeError, match="dataclass"):
        reg.add("y", lambda c, p, **k: [], params_type=dict)
    assert reg.get("x")(["a", "b"]) == [1.0, 1.0]
    assert isinstance(reg.get("x").params, NoParams)


def test_every_registered_reward_is_documented():
    # open-r1's docstring listed fewer rewards than its registry; here the package docstring is checked.
    documented = re.findall(r"^- (\w+):", rewards_pkg.__doc__, re.MULTILINE)
    assert documented == reward_names()
    assert len(reward_names()) == 11


def test_unknown_name_and_parameter_errors_suggest_the_fix():
    with pytest.raises(KeyError, match="did you mean 'accuracy'"):
        get_reward("acuracy")
    with pytest.raises(TypeError, match="did you mean 'max_len'"):
        get_reward("cosine", max_lenn=10)
    with pytest.raises(ValueError, match="correct_short must be >= correct_long"):
        get_reward("cosine", correct_short=0.1, correct_long=0.9)
    with pytest.raises(ValueError, match="max_penalty must be <= 0"):
        get_reward("repetition", max_penalty=0.5)


def test_reward_checks_column_lengths_and_missing_columns():
    fn = get_reward("accuracy", workers=0)
    with pytest.raises(ValueError, match="column 'answer' has 1 values for 2 completions"):
        fn(["a", "b"], answer=["1"])
    with pytest.raises(KeyError, match="needs the column 'answer'"):
        fn(["a"], solution=["1"])
    with pytest.raises(TypeError, match="list of completions"):
        fn("a single string", answer=["1"])


def test_combine_weights_per_name_and_none_propagation():
    specs = [RewardSpec("accuracy", 1.0, {"workers": 0}), RewardSpec("format", 0.5, {"mode": "boxed"}),
             {"name": "soft_overlong", "weight": 2.0, "max_len": 100, "cache_len": 50}]
    fn = combine_rewards(specs)
    comps = ["<think>add</think> so \\boxed{12}", "\\boxed{12}", "<think>x</think> \\boxed{7}"]
    total, per = fn(comps, answer=["12", "12", "\\frac{"], completion_lengths=[10, 75, 10])
    assert per["accuracy"] == [1.0, 1.0, None]
    assert per["format"] == [1.0, 0.0, 1.0]
    assert per["soft_overlong"] == [0.0, -0.5, 0.0]
    assert total == [1.5, 1.0 + 2.0 * -0.5, None]  # None in any weighted reward -> None total
    assert list(per) == ["accuracy", "format", "soft_overlong"]


def test_combine_reuses_accuracy_for_cosine_and_rejects_bad_lists():
    fn = combine_rewards([{"name": "cosine", "params": {"unit": "chars", "max_len": 100}},
                          {"name": "accuracy", "weight": 0.0, "params": {"workers": 0}}])
    total, per = fn(["\\boxed{3}", "\\boxed{4}"], answer=["3", "3"])
    assert per["accuracy"] == [1.0, 0.0]
    assert total == per["cosine"]  # accuracy has weight 0
    assert per["cosine"][0] > 0.9 and per["cosine"][1] < -0.9
    with pytest.raises(ValueError, match="appears twice"):
        combine_rewards([{"name": "format"}, {"name": "format"}])
    with pytest.raises(ValueError, match="empty"):
        combine_rewards([])
    with pytest.raises(ValueError, match="both inline and under params"):
        combine_rewards([{"name": "cosine", "max_len": 5, "params": {"max_len": 6}}])
    assert set(REWARDS.names()) >= {"accuracy", "code"}
