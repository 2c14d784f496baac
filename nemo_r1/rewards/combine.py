"""Weighted sum of rewards from config: `rewards: [{name: accuracy, weight: 1.0, params: {...}}, ...]`."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from nemo_r1.rewards.registry import RewardFn, Scores

_NEEDS_CORRECT = ("cosine", "length")


@dataclass
class RewardSpec:
    """One entry of the `rewards:` config list (the config tree's `rewards` section uses the same three fields)."""

    name: str = "accuracy"
    """A registered reward name (see `nemo_r1.rewards.REWARDS`)."""
    weight: float = 1.0
    params: dict[str, Any] = field(default_factory=dict)
    """Keyword arguments of that reward's parameter dataclass."""


class SpecLike(Protocol):
    name: str
    weight: float
    params: dict[str, Any]


CombinedFn = Callable[..., tuple[list[float | None], dict[str, Scores]]]


def combine_rewards(specs: Sequence[SpecLike | dict[str, Any]],
                    get: Callable[..., RewardFn] | None = None) -> CombinedFn:
    """Build `fn(completions, **columns) -> (total, per_name)`.

    `total[i]` is the weighted sum over rewards; it is None when any reward with a non-zero weight
    scored item i None (a partial sum would silently change the scale of that item's advantage).
    `per_name` maps each reward name to its raw (unweighted) scores, for `reward/<name>` metrics.
    Accuracy is scored once and handed to `cosine`/`length` as the `correct` column.
    """
    from nemo_r1.rewards import get_reward

    get = get or get_reward
    entries: list[tuple[str, float, RewardFn]] = []
    seen: set[str] = set()
    for spec in specs:
        name, weight, params = _fields(spec)
        if name in seen:
            raise ValueError(f"reward {name!r} appears twice in the rewards list; merge the entries")
        seen.add(name)
        if not math.isfinite(weight):
            raise ValueError(f"reward {name!r}: weight must be a finite number, got {weight}")
        entries.append((name, weight, get(name, **params)))
    if not entries:
        raise ValueError("the rewards list is empty; add e.g. {name: accuracy, weight: 1.0}")
    # Score accuracy first so the length-shaped rewards can reuse it instead of re-scoring.
    entries.sort(key=lambda e: e[0] != "accuracy")

    def combined(completions: list[str], **columns: Any) -> tuple[list[float | None], dict[str, Scores]]:
        per_name: dict[str, Scores] = {}
        for name, _, fn in entries:
            extra = {}
            if name in _NEEDS_CORRECT and "accuracy" in per_name and columns.get("correct") is None:
                extra["correct"] = per_name["accuracy"]
            per_name[name] = fn(completions, **columns, **extra)
        total: list[float | None] = []
        for i in range(len(completions)):
            parts = [(w, per_name[n][i]) for n, w, _ in entries if w != 0.0]
            total.append(None if any(s is None for _, s in parts) else sum(w * s for w, s in parts))  # type: ignore[operator]
        return total, per_name

    return combined


def _fields(spec: SpecLike | dict[str, Any]) -> tuple[str, float, dict[str, Any]]:
    if isinstance(spec, dict):  # plain YAML: other keys are inline params, {name: cosine, max_len: 512}
        if "name" not in spec:
            raise ValueError(f"reward entry {spec!r} has no `name`")
        inline = {k: v for k, v in spec.items() if k not in ("name", "weight", "params")}
        params = dict(spec.get("params") or {})
        clash = set(inline) & set(params)
        if clash:
            raise ValueError(f"reward {spec['name']!r}: {sorted(clash)} given both inline and under params")
        return str(spec["name"]), float(spec.get("weight", 1.0)), params | inline
    return spec.name, float(spec.weight), dict(spec.params or {})
