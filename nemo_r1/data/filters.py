"""Trace filters for `nemo-r1 filter`: a flat name -> function registry, open-r1's reward style.

Each filter is a few lines: `fn(rows, ctx, *args) -> list[Outcome]`, one outcome per row (kept or
dropped, and why). Correctness is the GRPO `accuracy` reward itself (`get_reward("accuracy")`, the
same math-verify call, gold first), so a trace kept here is one the trainer would score 1.0; its
verdict is computed once per row and shared by `correct`, `pass_rate` and `judge`.

Verdicts: `correct`; `wrong_answer`; `no_answer` (no final `\\boxed{}`/`<answer>`);
`answer_unparseable` (a final answer math-verify cannot read, e.g. `\\boxed{?}`); `gold_unparseable`
(the gold does not parse, or scoring it ran out of time: the accuracy reward's None, never correct).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from nemo_r1.rewards import get_reward
from nemo_r1.rewards.extract import extract_final_answer
from nemo_r1.rewards.format import THINK_CLOSE, THINK_OPEN

PROBLEM_COLUMNS = ("problem", "question", "prompt")
"""The problem text when `--columns problem=...` is not given: the first present column."""
GRADE_BATCH = 512
"""Rows per accuracy-reward call (one progress-bar step)."""
UNDECIDED = ("gold_unparseable", "answer_unparseable", "no_answer")
"""Verdicts math-verify cannot decide: what the `judge` filter asks a model about."""


class Outcome(NamedTuple):
    """A filter's decision on one row; `detail` is copied into the dropped row (e.g. the pass rate)."""

    keep: bool
    reason: str
    detail: dict[str, Any] | None = None


KEEP = Outcome(True, "ok")


@dataclass
class FilterContext:
    """Options and shared state of one run: column names, limits, and the cached verdicts."""

    columns: dict[str, str] = field(default_factory=dict)
    """field -> column in the file (problem, answer, completion, id, finish_reason)."""
    think: bool = True
    """`format`: require a `</think>` after any `<think>` (off for non-thinking traces)."""
    max_completion_tokens: int | None = None
    max_chars: int | None = None
    tokenizer: str = "embedded:smollm2"
    workers: int | None = None
    """Accuracy-reward scoring processes (None = its default, 0 = in this process)."""
    judge_model: str | None = None
    judge_backend: str = "vllm"
    judge_engine: Any = None
    """A ready eval engine for the judge (built from judge_model on first use when None)."""
    seed: int = 0
    progress: bool | None = False
    """A progress bar while grading; None = on a terminal for large inputs."""
    _verdicts: dict[int, str] = field(default_factory=dict, repr=False)
    _tok: Any = field(default=None, repr=False)

    def column(self, name: str, row: dict[str, Any] | None = None) -> str:
        if name in self.columns:
            return self.columns[name]
        if name == "problem" and row is not None:
            return next((c for c in PROBLEM_COLUMNS if c in row), "problem")
        return name

    def get(self, row: dict[str, Any], name: str) -> Any:
        return row.get(self.column(name, row))

    def text(self, row: dict[str, Any], name: str) -> str:
        value = self.get(row, name)
        return "" if value is None else str(value)

    def token_counts(self, texts: list[str]) -> list[int]:
        """Token lengths under `tokenizer` (loaded once; no special tokens added)."""
        if self._tok is None:
            from transformers import AutoTokenizer

            self._tok = AutoTokenizer.from_pretrained(str(resolve_model(self.tokenizer)))
        return [len(ids) for ids in self._tok(texts, add_special_tokens=False)["input_ids"]]


def resolve_model(path: str) -> str:
    """`embedded:smollm2` -> the cached SmolLM2 checkpoint; anything else as given."""
    from nemo_r1.embedded import resolve_model_arg

    return resolve_model_arg(path)


def problem_key(row: dict[str, Any], ctx: FilterContext) -> str:
    """Samples of one problem share this: the `id` column, else the problem text."""
    rid = ctx.get(row, "id")
    return f"id:{rid}" if rid is not None else "text:" + ctx.text(row, "problem").strip()


def grade(rows: list[dict[str, Any]], ctx: FilterContext) -> list[str]:
    """One verdict per row through the `accuracy` reward, computed once per row and cached."""
    todo = [r for r in rows if id(r) not in ctx._verdicts]
    if todo:
        from tqdm import tqdm

        reward = get_reward("accuracy", workers=ctx.workers)
        starts = range(0, len(todo), GRADE_BATCH)
        for start in tqdm(starts, disable=not ctx.progress, desc="grade", unit=" batch", mininterval=0.5):
            batch = todo[start:start + GRADE_BATCH]
            completions = [ctx.text(r, "completion") for r in batch]
            scores = reward(completions, answer=[ctx.text(r, "answer") for r in batch])
            for row, completion, score in zip(batch, completions, scores, strict=True):
                ctx._verdicts[id(row)] = _verdict(completion, score)
    return [ctx._verdicts[id(r)] for r in rows]


def _verdict(completion: str, score: float | None) -> str:
    if score is None:
        return "gold_unparseable"
    if score >= 1.0:
        return "correct"
    answer = extract_final_answer(completion)
    if answer is None:
        return "no_answer"
    from nemo_r1.rewards.accuracy import _parse_gold  # the reward's own reading of a bare answer

    try:
        return "wrong_answer" if _parse_gold(answer) else "answer_unparseable"
    except Exception:  # noqa: BLE001 - math-verify failing on it is what unparseable means
        return "answer_unparseable"


# --- the filters -------------------------------------------------------------------------------

def correct(rows: list[dict[str, Any]], ctx: FilterContext) -> list[Outcome]:
    """Keep completions whose final answer math-verify finds equal to the gold."""
    return [Outcome(v == "correct", v) for v in grade(rows, ctx)]


def pass_rate(rows: list[dict[str, Any]], ctx: FilterContext, low: float, high: float) -> list[Outcome]:
    """Keep problems whose share of correct samples lies in [low, high] (samples = rows of one problem)."""
    if not 0.0 <= low <= high <= 1.0:
        raise ValueError(f"pass_rate LOW HIGH: need 0 <= LOW <= HIGH <= 1, got {low} {high}")
    verdicts = grade(rows, ctx)
    groups: dict[str, list[str]] = {}
    keys = [problem_key(r, ctx) for r in rows]
    for key, v in zip(keys, verdicts, strict=True):
        groups.setdefault(key, []).append(v)
    out = []
    for key in keys:
        graded = [v for v in groups[key] if v != "gold_unparseable"]
        if not graded:
            out.append(Outcome(False, "gold_unparseable"))
            continue
        n_ok = graded.count("correct")
        rate = n_ok / len(graded)
        detail = {"pass_rate": round(rate, 4), "samples": len(graded), "correct": n_ok}
        if rate < low:
            out.append(Outcome(False, "pass_rate_below", detail))
        elif rate > high:
            out.append(Outcome(False, "pass_rate_above", detail))
        else:
            out.append(Outcome(True, "ok", detail))
    return out


def length(rows: list[dict[str, Any]], ctx: FilterContext) -> list[Outcome]:
    """Drop truncated completions (`finish_reason == "length"`) and those over the token/char limits."""
    texts = [ctx.text(r, "completion") for r in rows]
    tokens = ctx.token_counts(texts) if ctx.max_completion_tokens is not None else [0] * len(rows)
    out = []
    for row, text, n_tok in zip(rows, texts, tokens, strict=True):
        if ctx.get(row, "finish_reason") == "length":
            out.append(Outcome(False, "truncated"))
        elif ctx.max_completion_tokens is not None and n_tok > ctx.max_completion_tokens:
            out.append(Outcome(False, "too_many_tokens", {"tokens": n_tok}))
        elif ctx.max_chars is not None and len(text) > ctx.max_chars:
            out.append(Outcome(False, "too_many_chars", {"chars": len(text)}))
        else:
            out.append(KEEP)
    return out


_BOXED = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])")


def format_check(rows: list[dict[str, Any]], ctx: FilterContext) -> list[Outcome]:
    """Keep completions with a closed think block (unless ctx.think is off) and exactly one \\boxed{} after it."""
    out = []
    for row in rows:
        text = ctx.text(row, "completion")
        opened, closed = text.rfind(THINK_OPEN), text.rfind(THINK_CLOSE)
        if ctx.think and opened >= 0 and closed < opened:
            out.append(Outcome(False, "think_unclosed"))
            continue
        answer_part = text[closed + len(THINK_CLOSE):] if closed >= 0 else text
        n = len(_BOXED.findall(answer_part))
        out.append(KEEP if n == 1 else Outcome(False, "no_boxed" if n == 0 else "multiple_boxed", {"boxed": n}))
    return out


def judge(rows: list[dict[str, Any]], ctx: FilterContext) -> list[Outcome]:
    """`correct`, with an LLM judge (YES/NO) deciding the rows math-verify cannot (see UNDECIDED)."""
    from nemo_r1.data.judge import ask_judge

    verdicts = grade(rows, ctx)
    undecided = [i for i, v in enumerate(verdicts) if v in UNDECIDED]
    answers = ask_judge([rows[i] for i in undecided], ctx) if undecided else []
    out = [Outcome(v == "correct", v) for v in verdicts]
    for i, (said, raw) in zip(undecided, answers, strict=True):
        detail = {"verdict": verdicts[i], "judge_output": raw}
        out[i] = Outcome(True, "judge_yes", detail) if said is True else \
            Outcome(False, "judge_no" if said is False else "judge_unclear", detail)
    return out


# --- the registry ------------------------------------------------------------------------------

@dataclass(frozen=True)
class FilterEntry:
    name: str
    fn: Callable[..., list[Outcome]]
    args: tuple[str, ...]
    """Names of the float arguments that follow the filter's name on the command line."""
    doc: str


class FilterRegistry:
    """An explicit dict of filters that refuses duplicate names."""

    def __init__(self) -> None:
        self._entries: dict[str, FilterEntry] = {}

    def add(self, name: str, fn: Callable[..., list[Outcome]], args: tuple[str, ...] = ()) -> None:
        if name in self._entries:
            raise ValueError(f"filter {name!r} is already registered")
        self._entries[name] = FilterEntry(name, fn, args, (fn.__doc__ or "").strip().splitlines()[0])

    def get(self, name: str) -> FilterEntry:
        if name not in self._entries:
            raise KeyError(f"unknown filter {name!r}; filters: {', '.join(self._entries)}")
        return self._entries[name]

    def names(self) -> list[str]:
        return list(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries


FILTERS = FilterRegistry()
FILTERS.add("correct", correct)
FILTERS.add("pass_rate", pass_rate, ("low", "high"))
FILTERS.add("length", length)
FILTERS.add("format", format_check)
FILTERS.add("judge", judge)
