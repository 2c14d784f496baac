"""Reward functions for GRPO: `get_reward(name, **params)(completions, **columns) -> list[float | None]`.

Registered rewards (this list is checked against the registry by a test):
- accuracy: math-verify equivalence of the last \\boxed{} / <answer> with the `answer` column.
- format: one think block, then the answer (answer tag or \\boxed), prefilled <think> aware.
- tag_count: partial credit per expected tag present exactly once.
- reasoning_steps: step markers ("Step 1:", "1.", bullets, First/Next/Finally).
- cosine: length-scaled by correctness, clamped at max_len.
- repetition: n-gram repetition penalty.
- length: Kimi 1.5 group-relative length reward.
- soft_overlong: DAPO soft overlong punishment.
- code: fraction of tests passed by the last ```python block, run in the sandbox.
- countdown: TinyZero's countdown score for the <answer> equation (0 / 0.1 / 1.0).
- knights_knaves: Logic-RL's Knights-and-Knaves score (format +-1 plus answer 2 / -1.5 / -2).

Columns are the dataset's columns for each completion (`answer`, `prompt`, `verification_info`,
...) plus what the trainer knows (`completion_lengths` in tokens, `group_ids`); a reward ignores
columns it does not use. None = cannot be scored: drop it from means and count it.
"""

from nemo_r1.rewards.accuracy import AccuracyParams, accuracy
from nemo_r1.rewards.code import CodeParams, code
from nemo_r1.rewards.combine import RewardSpec, combine_rewards
from nemo_r1.rewards.countdown import CountdownParams, countdown
from nemo_r1.rewards.format import (
    FormatParams,
    ReasoningStepsParams,
    TagCountParams,
    format_reward,
    reasoning_steps,
    tag_count,
)
from nemo_r1.rewards.knights import KnightsParams, knights_knaves
from nemo_r1.rewards.length import (
    CosineParams,
    LengthParams,
    RepetitionParams,
    SoftOverlongParams,
    cosine,
    length,
    repetition,
    soft_overlong,
)
from nemo_r1.rewards.registry import RewardFn, RewardRegistry, Scores

REWARDS = RewardRegistry()
REWARDS.add("accuracy", accuracy, AccuracyParams)
REWARDS.add("format", format_reward, FormatParams)
REWARDS.add("tag_count", tag_count, TagCountParams)
REWARDS.add("reasoning_steps", reasoning_steps, ReasoningStepsParams)
REWARDS.add("cosine", cosine, CosineParams)
REWARDS.add("repetition", repetition, RepetitionParams)
REWARDS.add("length", length, LengthParams)
REWARDS.add("soft_overlong", soft_overlong, SoftOverlongParams)
REWARDS.add("code", code, CodeParams)
REWARDS.add("countdown", countdown, CountdownParams)
REWARDS.add("knights_knaves", knights_knaves, KnightsParams)


def get_reward(name: str, **params: object) -> RewardFn:
    """The reward `name` with its parameters bound; unknown names/parameters raise with a suggestion."""
    return REWARDS.get(name, **params)


def reward_names() -> list[str]:
    return REWARDS.names()


__all__ = ["REWARDS", "RewardFn", "RewardSpec", "Scores", "combine_rewards", "get_reward", "reward_names"]
