"""Structure rewards: `format`, `tag_count`, `reasoning_steps`.

The prefill bug: R1-Distill chat templates end the prompt with `<think>\\n`, so the completion
starts inside the thinking block and never contains the opening tag; a format check on the
completion alone then scores 0 forever. Here the opening tag counts as present when the prompt
(the `prompt` column, rendered text) ends with it, or when `think_prefilled=True`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from nemo_r1.rewards.extract import last_boxed
from nemo_r1.rewards.registry import Scores

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
ANSWER_OPEN, ANSWER_CLOSE = "<answer>", "</answer>"
_MODES = ("answer_tag", "boxed")


def _check_mode(mode: str) -> None:
    if mode not in _MODES:
        raise ValueError(f"mode={mode!r} is not one of {list(_MODES)}")


def prompt_prefills_think(prompt: Any) -> bool:
    """True when a rendered prompt ends inside an opened thinking block."""
    if not isinstance(prompt, str):
        return False  # a message list: the template was not applied, nothing was prefilled
    tail = prompt.rstrip()
    return tail.endswith(THINK_OPEN)


def _with_prefill(completions: list[str], prefilled: bool | None, columns: dict[str, Any]) -> list[str]:
    """Completions with the prefilled `<think>` put back in front, so one checker fits both cases."""
    prompts = columns.get("prompt")
    out = []
    for i, c in enumerate(completions):
        pre = prefilled if prefilled is not None else (prompts is not None and prompt_prefills_think(prompts[i]))
        out.append(THINK_OPEN + "\n" + c if pre and not c.lstrip().startswith(THINK_OPEN) else c)
    return out


@dataclass(frozen=True)
class FormatParams:
    mode: str = "answer_tag"
    """`answer_tag`: <think>...</think> then <answer>...</answer>; `boxed`: <think>...</think> then text with \\boxed{}."""
    think_prefilled: bool | None = None
    """True/False forces it; None detects it per row from the `prompt` column."""

    def __post_init__(self) -> None:
        _check_mode(self.mode)


def _format_ok(text: str, mode: str) -> bool:
    text = text.strip()
    if not text.startswith(THINK_OPEN) or text.count(THINK_OPEN) != 1 or text.count(THINK_CLOSE) != 1:
        return False
    thought, _, rest = text[len(THINK_OPEN):].partition(THINK_CLOSE)
    if not thought.strip():
        return False
    rest = rest.strip()
    if mode == "answer_tag":
        if rest.count(ANSWER_OPEN) != 1 or rest.count(ANSWER_CLOSE) != 1:
            return False
        return bool(re.fullmatch(r"<answer>(.+?)</answer>", rest, re.DOTALL)) and bool(rest[8:-9].strip())
    boxed = last_boxed(rest)
    return boxed is not None and bool(boxed[0].strip()) and ANSWER_OPEN not in rest


def format_reward(completions: list[str], p: FormatParams, **columns: Any) -> Scores:
    """1.0 if the completion has one non-empty think block followed by the answer (tag or \\boxed), else 0.0."""
    return [float(_format_ok(c, p.mode)) for c in _with_prefill(completions, p.think_prefilled, columns)]


@dataclass(frozen=True)
class TagCountParams:
    mode: str = "answer_tag"
    """`answer_tag` counts four tags (0.25 each); `boxed` counts the two think tags (0.5 each)."""
    think_prefilled: bool | None = None

    def __post_init__(self) -> None:
        _check_mode(self.mode)


def tag_count(completions: list[str], p: TagCountParams, **columns: Any) -> Scores:
    """Partial credit for each expected tag that appears exactly once (a dense signal for learning the format)."""
    tags = [THINK_OPEN, THINK_CLOSE] + ([ANSWER_OPEN, ANSWER_CLOSE] if p.mode == "answer_tag" else [])
    return [sum(c.count(t) == 1 for t in tags) / len(tags)
            for c in _with_prefill(completions, p.think_prefilled, columns)]


@dataclass(frozen=True)
class ReasoningStepsParams:
    target_steps: int = 3
    """Number of step markers that earns the full 1.0; fewer earn a proportional share."""

    def __post_init__(self) -> None:
        if self.target_steps < 1:
            raise ValueError(f"target_steps must be >= 1, got {self.target_steps}")


# Line-initial markers ("Step 2:", "2. ", "- ") and capitalised transition words (sentence starts only,
# so a "then" inside a sentence does not count).
_STEP_LINE = re.compile(r"(?:^|\n)[ \t]*(?:step\s*\d+\s*[:.)]|\d+[.)]\s|[-*•]\s)", re.IGNORECASE)
_STEP_WORD = re.compile(r"\b(?:First|Second|Third|Next|Then|Finally),?\s")


def reasoning_steps(completions: list[str], p: ReasoningStepsParams, **columns: Any) -> Scores:
    """min(1, step markers / target_steps): numbered steps, bullets and transition words."""
    return [min(1.0, (len(_STEP_LINE.findall(c)) + len(_STEP_WORD.findall(c))) / p.target_steps)
            for c in completions]
