"""Reward registry: an explicit name -> (function, parameter dataclass) table.

Why a parameter dataclass per reward: open-r1 flattens every reward's knobs onto one args class
and reads them with `getattr(args, name, default)`, so a typo silently falls back to a default.
Here `get_reward("cosine", max_len=512)` builds `CosineParams(max_len=512)`; an unknown key is an
error that names the valid keys. Columns (per-completion lists such as `answer`) come as keyword
arguments at call time; a reward ignores columns it does not use.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass, fields, is_dataclass
from typing import Any

Scores = list[float | None]
"""One score per completion; None = this completion cannot be scored (e.g. its gold answer does not
parse). The trainer drops None from means and counts it instead of treating it as 0 or 1."""


@dataclass(frozen=True)
class NoParams:
    """For rewards without knobs."""


@dataclass(frozen=True)
class RewardEntry:
    name: str
    fn: Callable[..., Scores]
    """`fn(completions, params, **columns) -> Scores`."""
    params_type: type
    doc: str


class RewardFn:
    """A reward with its parameters bound: `fn(completions, **columns) -> list[float | None]`."""

    def __init__(self, entry: RewardEntry, params: Any) -> None:
        self.name = entry.name
        self.params = params
        self._fn = entry.fn
        self.__doc__ = entry.doc

    def __call__(self, completions: list[str], **columns: Any) -> Scores:
        if isinstance(completions, str):
            raise TypeError(f"reward {self.name!r} takes a list of completions, got one string")
        for key, col in columns.items():
            if isinstance(col, list | tuple) and len(col) != len(completions):
                raise ValueError(f"reward {self.name!r}: column {key!r} has {len(col)} values for "
                                 f"{len(completions)} completions")
        scores = self._fn(list(completions), self.params, **columns)
        assert len(scores) == len(completions), f"reward {self.name!r} returned {len(scores)} scores"
        return scores

    def __repr__(self) -> str:
        return f"RewardFn({self.name!r}, {self.params!r})"


class RewardRegistry:
    """An explicit dict of rewards that refuses duplicate names (a silent overwrite would swap a
    reward under a config without anyone noticing)."""

    def __init__(self) -> None:
        self._entries: dict[str, RewardEntry] = {}

    def add(self, name: str, fn: Callable[..., Scores], params_type: type = NoParams) -> None:
        if name in self._entries:
            raise ValueError(f"reward {name!r} is already registered ({self._entries[name].fn.__module__})")
        if not is_dataclass(params_type):
            raise TypeError(f"reward {name!r}: params_type must be a dataclass, got {params_type!r}")
        doc = (fn.__doc__ or "").strip().splitlines()[0] if fn.__doc__ else ""
        self._entries[name] = RewardEntry(name, fn, params_type, doc)

    def names(self) -> list[str]:
        return list(self._entries)

    def entry(self, name: str) -> RewardEntry:
        if name not in self._entries:
            near = difflib.get_close_matches(name, self._entries, n=1)
            hint = f"; did you mean {near[0]!r}?" if near else ""
            raise KeyError(f"unknown reward {name!r}{hint} (known: {', '.join(self._entries)})")
        return self._entries[name]

    def get(self, name: str, **params: Any) -> RewardFn:
        entry = self.entry(name)
        valid = {f.name for f in fields(entry.params_type)}
        for key in params:
            if key not in valid:
                near = difflib.get_close_matches(key, valid, n=1)
                hint = f"; did you mean {near[0]!r}?" if near else ""
                raise TypeError(f"reward {name!r} has no parameter {key!r}{hint} "
                                f"(parameters: {', '.join(sorted(valid)) or 'none'})")
        try:
            bound = entry.params_type(**params)
        except (TypeError, ValueError) as e:
            raise type(e)(f"reward {name!r}: {e}") from None
        return RewardFn(entry, bound)


def require_column(reward: str, columns: dict[str, Any], name: str) -> list[Any]:
    """A per-completion column a reward needs, or an error that lists what the batch has."""
    if name not in columns or columns[name] is None:
        have = ", ".join(sorted(columns)) or "none"
        raise KeyError(f"reward {reward!r} needs the column {name!r} (the dataset's gold column, "
                       f"mapped with data.columns); columns passed: {have}")
    return list(columns[name])
