"""Schedules: a scalar config value that changes at given steps inside one run.

DeepScaleR lengthens the generation budget from 8k to 16k to 24k tokens at fixed steps; a KL weight
or a clip range can be ramped the same way. The `schedules` section of the run config maps a dotted
key to its points::

    schedules:
      rollout.max_new_tokens: {steps: [0, 1040, 1520], values: [8192, 16384, 24576]}
      grpo.beta: {steps: [0, 200], values: [0.001, 0.0001], interp: linear}

`steps` count the optimizer steps already done (the loop's 0-based index; metrics.jsonl logs that
step as `"step": index + 1`), so a point at step s applies from the (s+1)-th step on. `interp: step`
(the default) holds each value until the next point; `linear` draws a straight line between points
(an int key is rounded to the nearest int) and holds the last value after the last point.

The value of a step is a pure function of (schedule, step): `apply_schedules(cfg, step)` sets it on
the config at the top of every loop step, so a resumed run uses exactly the values an uninterrupted
one would have. Only keys the GRPO loop re-reads every step can be scheduled (`SCHEDULABLE`); a key
read once when the run starts (model.path, parallel.*, train.max_steps, ...) is refused at load time.
"""

from __future__ import annotations

import bisect
import dataclasses
import difflib
import math
import types
from dataclasses import dataclass, field, fields, is_dataclass
from typing import TYPE_CHECKING, Any, Union, get_args, get_origin, get_type_hints

if TYPE_CHECKING:
    from nemo_r1.config import Config

INTERPOLATIONS = ("step", "linear")


@dataclass
class Schedule:
    """One scheduled key: the value `values[i]` takes effect at loop step `steps[i]`."""

    steps: list[int] = field(default_factory=list)
    """Loop steps (optimizer steps done, from 0) where each value takes effect: strictly increasing, first 0."""
    values: list[Any] = field(default_factory=list)
    """One value per step, of the scheduled key's type (an int key takes ints)."""
    interp: str = "step"
    """`step`: each value holds until the next point; `linear`: a straight line between points."""


# The keys the GRPO loop (trainers/grpo_run.py) re-reads every step, with where it reads them.
SCHEDULABLE: dict[str, str] = {
    "rollout.max_new_tokens": "the step's sampling settings (cfg.rollout.sampling) and dr_grpo's normaliser",
    "rollout.top_p": "the step's sampling settings (cfg.rollout.sampling)",
    "grpo.beta": "the step's loss and whether it computes reference logprobs (train_on_batch)",
    "grpo.eps_low": "the step's clipped loss (make_loss_fn)",
    "grpo.eps_high": "the step's clipped loss (make_loss_fn)",
    "grpo.dual_clip": "the step's clipped loss (make_loss_fn)",
    "grpo.tis_cap": "the step's importance-sampling cap (make_loss_fn)",
    "grpo.mu": "the step's number of policy iterations (train_on_batch)",
}

# Why some keys people reach for cannot be scheduled, and what to use instead.
_REFUSED_BECAUSE: dict[str, str] = {
    "optim.lr": "the learning rate comes from the optimizer's LR scheduler, built once and saved in every "
                "checkpoint; for a linear warmup from 0 set optim.warmup_steps (or optim.warmup_ratio), "
                "for a decay optim.scheduler=cosine|linear with optim.min_lr and optim.decay_steps",
    "optim.min_lr": "the LR scheduler is built once; set optim.scheduler, optim.min_lr and optim.decay_steps",
    "rollout.temperature": "the policy computes its training logprobs at the temperature it was built with, "
                           "so a scheduled temperature would sample from one distribution and train on another",
    "grpo.num_generations": "the loop sizes its batches once, before the first step",
    "grpo.prompts_per_step": "the loop sizes its batches once, before the first step",
}

# Lower bounds (value, inclusive) the sections' own checks do not cover (GRPOConfig has no
# __post_init__; policy_loss would only fail at the step that reaches the value).
_LOWER: dict[str, tuple[float, bool]] = {"grpo.beta": (0.0, True), "grpo.eps_low": (0.0, True),
                                         "grpo.eps_high": (0.0, True), "grpo.mu": (1, True),
                                         "grpo.dual_clip": (1.0, False), "grpo.tis_cap": (0.0, False)}


def value_at(schedule: Schedule, step: int) -> Any:
    """The value `schedule` gives loop step `step` (0-based): piecewise constant or linear."""
    if not schedule.steps or step < schedule.steps[0]:
        raise ValueError(f"step {step} comes before the first point of the schedule (steps {schedule.steps})")
    i = bisect.bisect_right(schedule.steps, step) - 1
    if schedule.interp == "step" or i == len(schedule.steps) - 1:
        return schedule.values[i]
    s0, s1 = schedule.steps[i], schedule.steps[i + 1]
    v0, v1 = schedule.values[i], schedule.values[i + 1]
    return v0 + (v1 - v0) * (step - s0) / (s1 - s0)


def apply_schedules(cfg: Config, step: int) -> dict[str, Any]:
    """Set every scheduled key on `cfg` to its value at loop step `step`; returns them as metrics
    (`schedule/<key>`), so metrics.jsonl shows which value each step ran with."""
    out: dict[str, Any] = {}
    for key, schedule in cfg.schedules.items():
        parent, name, kind = _resolve(cfg, key)
        value = value_at(schedule, step)
        value = math.floor(value + 0.5) if kind is int else float(value) if kind is float else value
        setattr(parent, name, value)
        out[f"schedule/{key}"] = value
    return out


def refuse_schedules(cfg: Config, command: str) -> None:
    """Commands whose loop reads none of the schedulable keys refuse a `schedules` section rather
    than ignore it silently."""
    from nemo_r1.config import ConfigError  # config imports this module: import its error class late

    if cfg.schedules:
        raise ConfigError(f"schedules is set ({', '.join(cfg.schedules)}), but nemo-r1 {command} reads none of the "
                         f"keys a schedule can change (they are GRPO's: {', '.join(SCHEDULABLE)}); remove the "
                         "schedules section (an LR warmup or decay is optim.warmup_steps / optim.scheduler)")


def check_section_shape(raw: Any, where: str) -> None:
    """The raw `schedules` mapping of one YAML layer or override: {dotted key: {steps, values, interp}}.
    OmegaConf would fail on a list there with a bare TypeError; this names the key instead."""
    if raw is None:
        return
    if not isinstance(raw, dict):
        raise ValueError(f"{where}: schedules must be a mapping of dotted config keys to schedules, e.g. "
                         "schedules: {rollout.max_new_tokens: {steps: [0, 500], values: [8192, 16384]}}")
    own = {f.name for f in fields(Schedule)}
    for key, spec in raw.items():
        if not isinstance(spec, dict):
            raise ValueError(f"{where}: schedules.{key} must be a mapping {{steps: [...], values: [...], "
                             f"interp: step|linear}}, got {type(spec).__name__} {spec!r}")
        extra = sorted(set(spec) - own)
        if extra:
            raise ValueError(f"{where}: schedules.{key} has unknown fields {extra} (a schedule has steps, values "
                             "and interp); the scheduled key is one dotted name: schedules: {rollout.max_new_tokens: "
                             "{steps: [0, 500], values: [8192, 16384]}}, on the command line "
                             "'schedules={rollout.max_new_tokens: {steps: [0, 500], values: [8192, 16384]}}'")


def check_schedules(cfg: Config) -> None:
    """Load-time checks of the `schedules` section; each error names the scheduled key."""
    for key, schedule in cfg.schedules.items():
        _check_one(cfg, key, schedule)


# ------------------------------------------------------------------ checks


def _check_one(cfg: Config, key: str, s: Schedule) -> None:
    where = f"schedules.{key}"
    parent, name, kind = _resolve(cfg, key)  # unknown keys and sections fail here
    if key not in SCHEDULABLE:
        why = _REFUSED_BECAUSE.get(key, "it is read once, when the run starts")
        raise ValueError(f"{where}: {key!r} cannot change inside a run: {why}. A schedule can set only the keys "
                         f"the GRPO loop re-reads every step: {', '.join(SCHEDULABLE)}")
    if s.interp not in INTERPOLATIONS:
        near = difflib.get_close_matches(str(s.interp), INTERPOLATIONS, n=1)
        hint = f"; did you mean {near[0]!r}?" if near else ""
        raise ValueError(f"{where}.interp={s.interp!r} is not one of {list(INTERPOLATIONS)}{hint}")
    if not s.steps or len(s.steps) != len(s.values):
        raise ValueError(f"{where}: steps and values must have the same length (>= 1), got {len(s.steps)} steps "
                         f"and {len(s.values)} values")
    if s.steps[0] != 0:
        raise ValueError(f"{where}.steps must start at 0 (every step needs a value), got {s.steps}")
    bad = [b for a, b in zip(s.steps, s.steps[1:], strict=False) if b <= a]
    if bad:
        raise ValueError(f"{where}.steps must be strictly increasing, got {s.steps} (at {bad[0]})")
    for step, value in zip(s.steps, s.values, strict=True):
        _check_value(cfg, where, key, parent, name, kind, step, value)
    if s.interp == "linear" and kind not in (int, float):
        raise ValueError(f"{where}: interp=linear needs a numeric key, {key!r} is {kind.__name__}")
    if key == "rollout.max_new_tokens":
        _check_fits_context(cfg, where, max(s.values))
    if key == "grpo.beta" and max(s.values) > 0 and cfg.grpo.beta == 0:
        raise ValueError(f"{where} reaches {max(s.values):g}, but grpo.beta=0 builds no reference model (it is "
                         "built once, before the first step, only when grpo.beta > 0); set grpo.beta to a value "
                         "> 0: the schedule gives every step its value")


def _check_value(cfg: Config, where: str, key: str, parent: Any, name: str, kind: type, step: int, value: Any) -> None:
    at = f"{where}: value {value!r} at step {step}"
    numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is int and not (numeric and isinstance(value, int)):
        raise ValueError(f"{at} is not an int; {key} takes ints")
    if kind is float and not numeric:
        hint = (" (YAML reads a number without a dot, such as 1e-6, as text: write 1.0e-6)"
                if isinstance(value, str) else "")
        raise ValueError(f"{at} is not a number; {key} takes floats{hint}")
    if kind not in (int, float) and not isinstance(value, kind):
        raise ValueError(f"{at} is not a {kind.__name__}, the type of {key}")
    if key in _LOWER:
        low, inclusive = _LOWER[key]
        if value < low or (value == low and not inclusive):
            raise ValueError(f"{at} is out of range: {key} must be {'>=' if inclusive else '>'} {low:g}")
    if hasattr(parent, "__post_init__"):  # the section's own checks, on a copy holding this value
        try:
            dataclasses.replace(parent, **{name: value})
        except ValueError as e:
            raise ValueError(f"{at}: {e}") from None


def _check_fits_context(cfg: Config, where: str, most: int) -> None:
    """The rule the engine applies to every prompt (prompt tokens + max_new_tokens <= max_model_len),
    checked here for the schedule's largest budget and the shortest possible prompt (one token), so a
    budget that can never fit fails at load time, not thousands of steps in."""
    limit = cfg.rollout.max_model_len or cfg.train.max_seq_len
    name = "rollout.max_model_len" if cfg.rollout.max_model_len else "train.max_seq_len (rollout.max_model_len is null)"
    if most + 1 > limit:
        raise ValueError(f"{where} reaches {most} new tokens, but prompt + completion must fit the engine's context, "
                         f"{name} = {limit}; raise it to at least {most} + your longest prompt")


# ------------------------------------------------------------------ key resolution


def _resolve(cfg: Config, key: str) -> tuple[Any, str, type]:
    """(section object, field name, scalar type) of a dotted key; unknown or non-scalar keys fail."""
    node: Any = cfg
    parts = key.split(".")
    for i, part in enumerate(parts):
        names = [f.name for f in fields(node)] if is_dataclass(node) else []
        if part not in names:
            near = difflib.get_close_matches(key, _scalar_keys(cfg), n=1, cutoff=0.6)
            hint = f"; did you mean {near[0]!r}?" if near else ""
            raise ValueError(f"schedules: unknown config key {key!r}{hint}")
        if i == len(parts) - 1:
            kind = _scalar_type(get_type_hints(type(node))[part])
            if kind is None:
                what = "a section" if is_dataclass(getattr(node, part)) else "not a single number or string"
                raise ValueError(f"schedules.{key}: {key!r} is {what}; a schedule sets one scalar value per step")
            return node, part, kind
        node = getattr(node, part)
    raise AssertionError("unreachable")


def _scalar_type(hint: Any) -> type | None:
    """int/float/bool/str for a scalar annotation (`X | None` counts as X), None for anything else."""
    if get_origin(hint) in (Union, types.UnionType):
        args = [a for a in get_args(hint) if a is not type(None)]
        hint = args[0] if len(args) == 1 else None
    return hint if hint in (int, float, bool, str) else None


def _scalar_keys(node: Any, prefix: str = "") -> list[str]:
    out = []
    for f in fields(node):
        value = getattr(node, f.name)
        if is_dataclass(value):
            out += _scalar_keys(value, f"{prefix}{f.name}.")
        elif _scalar_type(get_type_hints(type(node))[f.name]) is not None:
            out.append(f"{prefix}{f.name}")
    return out
