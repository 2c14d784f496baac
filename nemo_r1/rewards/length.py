"""Length-shaped rewards: `cosine`, `length` (Kimi 1.5), `soft_overlong` (DAPO), `repetition`.

Lengths are token counts from the `completion_lengths` column (the trainer knows them); with
`unit="chars"` they are character counts instead, for data without token counts. Mixing the two
silently (open-r1 measures characters against a token budget) is what the explicit unit prevents.
Rewards that depend on correctness read the `correct` column (accuracy scores, which
`combine_rewards` passes along) or score accuracy themselves when it is absent.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from nemo_r1.rewards.accuracy import AccuracyParams, accuracy
from nemo_r1.rewards.registry import Scores

_UNITS = ("tokens", "chars")


def _lengths(reward: str, unit: str, completions: list[str], columns: dict[str, Any]) -> list[int]:
    if unit == "chars":
        return [len(c) for c in completions]
    if columns.get("completion_lengths") is None:
        raise KeyError(f"reward {reward!r} with unit='tokens' needs the `completion_lengths` column "
                       "(token counts per completion); pass it, or set unit='chars'")
    return [int(n) for n in columns["completion_lengths"]]


def _correct(completions: list[str], columns: dict[str, Any]) -> list[float | None]:
    if columns.get("correct") is not None:
        return list(columns["correct"])
    return accuracy(completions, AccuracyParams(), **columns)


def _check_unit(unit: str) -> None:
    if unit not in _UNITS:
        raise ValueError(f"unit={unit!r} is not one of {list(_UNITS)}")


@dataclass(frozen=True)
class CosineParams:
    max_len: int = 1000
    """Length at which the reward reaches its `*_long` value (and stays there: clamped)."""
    correct_short: float = 1.0
    correct_long: float = 0.5
    wrong_short: float = -1.0
    wrong_long: float = -0.5
    unit: str = "tokens"

    def __post_init__(self) -> None:
        _check_unit(self.unit)
        if self.max_len <= 0:
            raise ValueError(f"max_len must be > 0, got {self.max_len}")
        if self.correct_short < self.correct_long:
            raise ValueError("correct_short must be >= correct_long (short correct answers are preferred)")
        if self.wrong_long < self.wrong_short:
            raise ValueError("wrong_long must be >= wrong_short (a long wrong attempt beats giving up early)")


def cosine(completions: list[str], p: CosineParams, **columns: Any) -> Scores:
    """Cosine-scaled by length: correct short > correct long > wrong long > wrong short, clamped at max_len."""
    lengths = _lengths("cosine", p.unit, completions, columns)
    out: Scores = []
    for n, ok in zip(lengths, _correct(completions, columns), strict=True):
        if ok is None:
            out.append(None)
            continue
        t = min(max(n / p.max_len, 0.0), 1.0)  # unclamped, cos() turns back up past max_len
        short, long_ = (p.correct_short, p.correct_long) if ok >= 0.5 else (p.wrong_short, p.wrong_long)
        out.append(long_ + (short - long_) * 0.5 * (1.0 + math.cos(math.pi * t)))
    return out


@dataclass(frozen=True)
class LengthParams:
    unit: str = "tokens"

    def __post_init__(self) -> None:
        _check_unit(self.unit)


def length(completions: list[str], p: LengthParams, **columns: Any) -> Scores:
    """Kimi 1.5 group-relative length reward: 0.5 - (len-min)/(max-min) within the prompt's group; wrong answers get at most 0."""
    lengths = _lengths("length", p.unit, completions, columns)
    correct = _correct(completions, columns)
    if columns.get("group_ids") is not None:
        keys = list(columns["group_ids"])
    elif columns.get("prompt") is not None:
        keys = [repr(x) for x in columns["prompt"]]
    else:
        raise KeyError("reward 'length' is group-relative: pass `group_ids` or `prompt` so completions of "
                       "the same prompt are compared with each other, not with the whole batch")
    groups: dict[Any, list[int]] = defaultdict(list)
    for i, k in enumerate(keys):
        groups[k].append(i)
    out: Scores = [0.0] * len(completions)
    for idx in groups.values():
        lo, hi = min(lengths[i] for i in idx), max(lengths[i] for i in idx)
        for i in idx:
            if correct[i] is None:
                out[i] = None
                continue
            lam = 0.0 if hi == lo else 0.5 - (lengths[i] - lo) / (hi - lo)
            out[i] = lam if correct[i] >= 0.5 else min(0.0, lam)
    return out


@dataclass(frozen=True)
class SoftOverlongParams:
    max_len: int = 1024
    """L_max: the generation budget (rollout.max_new_tokens)."""
    cache_len: int = 256
    """L_cache: the penalty ramps from 0 to -1 over the last `cache_len` tokens before max_len."""
    unit: str = "tokens"

    def __post_init__(self) -> None:
        _check_unit(self.unit)
        if not 0 < self.cache_len <= self.max_len:
            raise ValueError(f"need 0 < cache_len <= max_len, got cache_len={self.cache_len}, max_len={self.max_len}")


def soft_overlong(completions: list[str], p: SoftOverlongParams, **columns: Any) -> Scores:
    """DAPO soft overlong punishment: 0 up to max_len-cache_len, linear to -1 at max_len, -1 beyond."""
    start = p.max_len - p.cache_len
    out: Scores = []
    for n in _lengths("soft_overlong", p.unit, completions, columns):
        out.append(0.0 if n <= start else (start - n) / p.cache_len if n <= p.max_len else -1.0)
    return out


@dataclass(frozen=True)
class RepetitionParams:
    ngram_size: int = 3
    max_penalty: float = -1.0
    """Penalty when every n-gram is a repeat; must be <= 0."""

    def __post_init__(self) -> None:
        if self.max_penalty > 0:
            raise ValueError(f"max_penalty must be <= 0 (it is a penalty), got {self.max_penalty}")
        if self.ngram_size < 1:
            raise ValueError(f"ngram_size must be >= 1, got {self.ngram_size}")


def repetition(completions: list[str], p: RepetitionParams, **columns: Any) -> Scores:
    """max_penalty x (1 - distinct word n-grams / all n-grams); 0 for text shorter than one n-gram."""
    out: Scores = []
    for c in completions:
        words = c.lower().split()
        grams = [tuple(words[i:i + p.ngram_size]) for i in range(len(words) - p.ngram_size + 1)]
        out.append(0.0 if not grams else (1.0 - len(set(grams)) / len(grams)) * p.max_penalty)
    return out
