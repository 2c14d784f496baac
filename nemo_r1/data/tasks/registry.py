"""The generated-task registry: name -> seeded generator, difficulty knobs, split, rewards, prompt.

Splits: a problem is held out when a hash of its text falls below the task's held-out fraction.
Why a hash and not "the last 10% of one generated list": membership is then a property of the
problem alone, the same whatever the seed, n or order it was drawn in, so no train file of any seed
can share a problem with any held-out file. Within a split the rows are distinct problems: the
seeded stream of draws is filtered to the split and de-duplicated, so the first k rows of n are the
rows asked for with n = k.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import random
from collections.abc import Callable
from dataclasses import dataclass, is_dataclass
from pathlib import Path
from typing import Any

from nemo_r1.data.config import DataConfig

PREFIX = "generated:"
TRAIN, HELDOUT = "train", "heldout"
SPLITS = (TRAIN, HELDOUT)
MAX_MISSES = 20_000
"""Consecutive draws that bring no new problem of the split before the split counts as used up; a
split that really holds more problems yields a new one far sooner (tens of draws at most)."""


@dataclass(frozen=True)
class TaskSpec:
    """One generated task: how to draw a problem, how to split, how to prompt and score it."""

    name: str
    knobs: type
    """Frozen dataclass of difficulty knobs; `knobs()` is the default difficulty."""
    draw: Callable[[random.Random, Any], dict[str, Any]]
    """One row without its id: `problem`, `answer` and any column the reward needs."""
    heldout_fraction: float
    rewards: tuple[dict[str, Any], ...]
    """The `rewards:` list a recipe for this task uses."""
    prompt_suffix: str
    few_shot: tuple[dict[str, str], ...]
    train_rows: int
    """Rows `generated:NAME` writes for a run."""
    heldout_rows: int
    """Rows `generated:NAME:heldout` writes."""
    doc: str = ""

    def __post_init__(self) -> None:
        if not 0.0 < self.heldout_fraction < 1.0:
            raise ValueError(f"task {self.name!r}: heldout_fraction must be in (0, 1), got {self.heldout_fraction}")
        if not is_dataclass(self.knobs):
            raise TypeError(f"task {self.name!r}: knobs must be a dataclass type, got {self.knobs!r}")


class TaskRegistry:
    """An explicit dict of tasks that refuses duplicate names."""

    def __init__(self) -> None:
        self._specs: dict[str, TaskSpec] = {}

    def add(self, spec: TaskSpec) -> None:
        if spec.name in self._specs:
            raise ValueError(f"generated task {spec.name!r} is already registered")
        self._specs[spec.name] = spec

    def names(self) -> list[str]:
        return list(self._specs)

    def get(self, name: str) -> TaskSpec:
        if name not in self._specs:
            near = difflib.get_close_matches(name, self._specs, n=1)
            hint = f"; did you mean {near[0]!r}?" if near else ""
            known = ", ".join(PREFIX + n for n in self._specs)
            raise ValueError(f"unknown generated task {name!r}{hint} (known: {known}, each also with "
                             f"the suffix :{HELDOUT})")
        return self._specs[name]


TASKS = TaskRegistry()


def problem_hash(problem: str) -> str:
    """Hex sha256 of the problem text: the split key and the row id."""
    return hashlib.sha256(problem.encode("utf-8")).hexdigest()


def split_of(problem: str, heldout_fraction: float) -> str:
    """`heldout` when the text's hash, read as a number in [0, 1), is below the fraction."""
    return HELDOUT if int(problem_hash(problem)[:16], 16) / 2**64 < heldout_fraction else TRAIN


def parse_source(source: str) -> tuple[str, str]:
    """`generated:NAME` -> (NAME, train); `generated:NAME:heldout` -> (NAME, heldout)."""
    if not source.startswith(PREFIX):
        raise ValueError(f"{source!r} is not a generated task; write {PREFIX}NAME or {PREFIX}NAME:{HELDOUT}")
    name, _, split = source[len(PREFIX):].partition(":")
    TASKS.get(name)
    split = split or TRAIN
    if split not in SPLITS:
        raise ValueError(f"{source!r}: unknown split {split!r}; use {PREFIX}{name} (train) or "
                         f"{PREFIX}{name}:{HELDOUT}")
    return name, split


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split={split!r}: use one of {list(SPLITS)}")


def _knobs(spec: TaskSpec, task: Any) -> Any:
    if task is None:
        return spec.knobs()
    if not isinstance(task, spec.knobs):
        raise TypeError(f"task {spec.name!r} takes {spec.knobs.__name__} knobs, got {type(task).__name__}")
    return task


def task_rows(name: str, n: int, seed: int = 0, split: str = TRAIN, task: Any = None) -> list[dict[str, Any]]:
    """`n` distinct problems of `split`, deterministic in (name, seed, knobs); prefix-stable in n."""
    spec = TASKS.get(name)
    _check_split(split)
    knobs = _knobs(spec, task)
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    rng = random.Random(f"nemo-r1-{name}-{seed}")
    rows: list[dict[str, Any]] = []
    seen: set[str] = set()
    misses = 0
    while len(rows) < n:
        row = spec.draw(rng, knobs)
        problem = row["problem"]
        if problem in seen or split_of(problem, spec.heldout_fraction) != split:
            misses += 1
            if misses > MAX_MISSES:
                raise ValueError(f"{PREFIX}{name}{'' if split == TRAIN else ':' + split}: found only "
                                 f"{len(rows)} distinct {split} problems for n={n} at {knobs}; ask for "
                                 "fewer rows or widen a difficulty knob")
            continue
        misses = 0
        seen.add(problem)
        rows.append({"id": f"{name}-{problem_hash(problem)[:12]}", **row})
    return rows


def write_rows(path: str | Path, rows: list[dict[str, Any]]) -> Path:
    """Rows as jsonl, written atomically (a temp file renamed into place)."""
    from nemo_r1.data.decontaminate import atomic_write

    path = Path(path)
    with atomic_write(path) as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
    return path


def write_task(name: str, path: str | Path, n: int, seed: int = 0, split: str = TRAIN,
               task: Any = None) -> Path:
    """Write `n` rows of the task's `split` to `path` (jsonl: id, problem, answer, task columns)."""
    return write_rows(path, task_rows(name, n, seed, split, task))


def default_rows(name: str, split: str = TRAIN) -> int:
    """How many rows a run's `generated:NAME[:heldout]` source holds."""
    _check_split(split)
    spec = TASKS.get(name)
    return spec.train_rows if split == TRAIN else spec.heldout_rows


def task_data_config(name: str, path: str | Path) -> DataConfig:
    """The data settings a task's recipe uses (its prompt suffix and few-shot turns) on `path`."""
    spec = TASKS.get(name)
    return DataConfig(train=str(path), format="problem", prompt_suffix=spec.prompt_suffix,
                      few_shot=[dict(s) for s in spec.few_shot])

