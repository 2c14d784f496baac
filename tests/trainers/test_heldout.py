"""Held-out scoring of a GRPO run: greedy sampling, the run's rewards, mean and standard error, and
the summary line, with answers chosen by hand (the engine is a replay of those answers)."""

import json
import math

import pytest

from nemo_r1.config import RewardSpec, load_config
from nemo_r1.rewards import combine_rewards
from nemo_r1.rollout.base import Rollout
from nemo_r1.trainers.heldout import score_heldout, summary_line, write_result


class Replay:
    """Answers prompt i with `answers[i]`; records the sampling it was asked for."""

    def __init__(self, answers: dict[str, str]) -> None:
        self.answers, self.sampling = answers, []

    def generate(self, prompts, sampling):
        self.sampling.append(sampling)
        return [Rollout(i, 0, [1], [2], self.answers[p], [0.0], "stop") for i, p in enumerate(prompts)]


def test_greedy_accuracy_with_its_standard_error(tmp_path):
    cfg = load_config(None, [f"output_dir={tmp_path}", "rollout.temperature=1.0"])
    cfg.rewards = [RewardSpec(name="accuracy", params={"workers": 0})]
    rows = [{"prompt": f"q{i}", "answer": str(i)} for i in range(5)]
    engine = Replay({f"q{i}": f"\\boxed{{{i if i < 3 else 99}}}" for i in range(5)})  # 3 of 5 right
    scores = score_heldout(cfg, engine, rows, combine_rewards(cfg.rewards), 0, 1, None, None)
    assert engine.sampling[0].temperature == 0.0 and engine.sampling[0].n == 1  # greedy, one answer each
    p = 3 / 5
    assert scores["accuracy"]["n"] == 5 and scores["accuracy"]["mean"] == pytest.approx(p)
    assert scores["accuracy"]["se"] == pytest.approx(math.sqrt(p * (1 - p) * 5 / 4 / 5))  # sample std / sqrt(n)


def test_summary_line_compares_base_and_final(tmp_path):
    assert summary_line(tmp_path) is None
    write_result(tmp_path, "base", 0, {"accuracy": {"mean": 0.5, "se": 0.03, "n": 200}})
    assert summary_line(tmp_path) is None  # no final yet (the run stopped early)
    write_result(tmp_path, "final", 20, {"accuracy": {"mean": 0.62, "se": 0.04, "n": 200}})
    assert summary_line(tmp_path) == ("held-out accuracy 0.500 -> 0.620 (+-0.030 / +-0.040, 200 problems, greedy, "
                                      "step 0 -> 20, +2.4 s.e.)")
    assert json.loads((tmp_path / "heldout.json").read_text())["base"]["step"] == 0
