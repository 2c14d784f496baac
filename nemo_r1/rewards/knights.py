"""`knights_knaves`: Logic-RL's Knights-and-Knaves score, a format part plus an answer part.

Format, as Logic-RL's `validate_response_structure`: `<think>`, `</think>`, `<answer>`, `</answer>`
each exactly once and in that order: +1, else -1. A prompt that ends with `<think>` (prefilled,
as Logic-RL's own prompt does) counts as the opening tag.
Answer, as Logic-RL's `compute_score` (read only when the format is right, else -2):
- +2 when every inhabitant has the right role,
- -1.5 when every inhabitant is given a role but some role is wrong,
- -2 when the roles cannot be read: an inhabitant is missing, or there are more or fewer role
  words (knight/knave) than inhabitants, so a hedge like "Ben is a knight or a knave" fails.
Totals: 3 correct, -0.5 wrong, -1 unreadable, -3 bad format. An inhabitant's role is read from
"NAME is a knight|knave" anywhere in the answer (case-insensitive), so "(1) Alice is a knight"
lines and a sentence both work. The gold is the `answer` column in Logic-RL's solution format,
"(1) Alice is a knight\\n(2) Ben is a knave"; a gold that does not read that way scores None.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any

from nemo_r1.rewards.format import prompt_prefills_think
from nemo_r1.rewards.registry import Scores, require_column

log = logging.getLogger(__name__)

_TAGS = ("<think>", "</think>", "<answer>", "</answer>")
_GOLD_LINE = re.compile(r"\(\d+\)\s*([A-Za-z][A-Za-z'-]*)\s+is\s+an?\s+(knight|knave)\.?", re.IGNORECASE)
_ROLE_WORD = re.compile(r"\bkn(?:ight|ave)s?\b", re.IGNORECASE)


@dataclass(frozen=True)
class KnightsParams:
    format_score: float = 1.0
    """Added for the right tag structure, subtracted for a wrong one."""
    correct_score: float = 2.0
    wrong_score: float = -1.5
    unreadable_score: float = -2.0
    """Roles that cannot be read, or any completion with a wrong format."""
    think_prefilled: bool | None = None
    """True/False forces it; None detects it per row from the `prompt` column."""
    max_chars: int = 4000
    """A longer answer block is not read (it scores unreadable_score)."""

    def __post_init__(self) -> None:
        if self.max_chars < 1:
            raise ValueError(f"max_chars must be >= 1, got {self.max_chars}")


def structure_ok(text: str) -> bool:
    """Each tag exactly once, in the order think, /think, answer, /answer."""
    if any(text.count(tag) != 1 for tag in _TAGS):
        return False
    positions = [text.find(tag) for tag in _TAGS]
    return positions == sorted(positions)


def parse_gold(answer: str) -> dict[str, str] | None:
    """`(1) Alice is a knight` lines -> {Alice: knight}; None unless every line reads that way."""
    lines = [line.strip() for line in str(answer).splitlines() if line.strip()]
    roles: dict[str, str] = {}
    for line in lines:
        m = _GOLD_LINE.fullmatch(line)
        if m is None or m.group(1) in roles:
            return None
        roles[m.group(1)] = m.group(2).lower()
    return roles or None


def read_roles(answer: str, names: list[str]) -> dict[str, str] | None:
    """The role given to each of `names` in the answer text, or None when it cannot be read."""
    if len(_ROLE_WORD.findall(answer)) != len(names):
        return None
    roles = {}
    for name in names:
        found = re.findall(rf"\b{re.escape(name)}\s+is\s+an?\s+(knight|knave)\b", answer, re.IGNORECASE)
        if len(found) != 1:
            return None
        roles[name] = found[0].lower()
    return roles


def score_knights(completion: str, gold: dict[str, str], p: KnightsParams) -> float:
    """One completion's score (the module doc gives the scheme); `completion` includes a prefilled <think>."""
    if not structure_ok(completion):
        return -abs(p.format_score) + p.unreadable_score
    start = completion.find("<answer>") + len("<answer>")
    answer = completion[start:completion.find("</answer>")]
    roles = read_roles(answer, list(gold)) if len(answer) <= p.max_chars else None
    if roles is None:
        return p.format_score + p.unreadable_score
    return p.format_score + (p.correct_score if roles == gold else p.wrong_score)


def knights_knaves(completions: list[str], p: KnightsParams, **columns: Any) -> Scores:
    """Logic-RL's K&K score: format +1/-1 plus answer +2 right / -1.5 wrong / -2 unreadable or bad format."""
    golds = require_column("knights_knaves", columns, "answer")
    prompts = columns.get("prompt")
    scores: Scores = []
    for i, (completion, gold_text) in enumerate(zip(completions, golds, strict=True)):
        gold = parse_gold(gold_text) if gold_text is not None else None
        if gold is None:
            log.warning("knights_knaves: gold answer %r is not '(1) NAME is a knight|knave' lines; scored None",
                        str(gold_text)[:200])
            scores.append(None)
            continue
        prefilled = p.think_prefilled
        if prefilled is None:
            prefilled = prompts is not None and prompt_prefills_think(prompts[i])
        text = "<think>" + completion if prefilled and not completion.lstrip().startswith("<think>") else completion
        scores.append(score_knights(text, gold, p))
    return scores
