"""Benchmark decontamination: drop training rows that share a problem (exact, or one 8-gram) with a
benchmark the project evaluates on.

Text is compared as lower-cased alphanumeric words, so punctuation, whitespace and LaTeX markup
(`\\frac{1}{2}` -> `frac 1 2`) cannot hide a copy. Every text field a model is trained on is checked
(problem, solution, prompt/completion, chat turns), not only the problem column, and each drop is
reported with the benchmark and the words it matched.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from nemo_r1.data.bundled import BENCHMARKS, benchmark_problems
from nemo_r1.data.loading import DataError, Rows

log = logging.getLogger(__name__)

NGRAM = 8
TEXT_FIELDS = ("problem", "question", "prompt", "solution", "completion", "text")
"""Row columns checked, besides the contents of `messages`."""
_WORD = re.compile(r"[a-z0-9]+")


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def ngrams(tokens: Sequence[str], n: int = NGRAM) -> Iterable[tuple[str, ...]]:
    return (tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1))


def row_texts(row: dict[str, Any]) -> list[str]:
    """The text a model sees or is trained on in one row."""
    out = [row[k] for k in TEXT_FIELDS if isinstance(row.get(k), str)]
    for msg in row.get("messages") or []:
        if isinstance(msg, dict) and isinstance(msg.get("content"), str):
            out.append(msg["content"])
    return out


@dataclass(frozen=True)
class Match:
    benchmark: str
    kind: str
    """`exact` (the whole normalised text) or `8-gram`."""
    words: str


class NgramIndex:
    """Every 8-gram (and every whole normalised problem) of a set of benchmarks."""

    def __init__(self, n: int = NGRAM) -> None:
        self.n = n
        self.grams: dict[tuple[str, ...], str] = {}
        self.exact: dict[str, str] = {}

    @classmethod
    def from_benchmarks(cls, names: Iterable[str], n: int = NGRAM) -> NgramIndex:
        index = cls(n)
        for name in names:
            index.add(name, benchmark_problems(name))
        return index

    def add(self, name: str, texts: Iterable[str]) -> None:
        for text in texts:
            toks = words(text)
            if toks:
                self.exact.setdefault(" ".join(toks), name)
            for g in ngrams(toks, self.n):
                self.grams.setdefault(g, name)

    def match(self, text: str) -> Match | None:
        toks = words(text)
        joined = " ".join(toks)
        if joined in self.exact:
            return Match(self.exact[joined], "exact", joined)
        for g in ngrams(toks, self.n):
            if g in self.grams:
                return Match(self.grams[g], f"{self.n}-gram", " ".join(g))
        return None

    def match_row(self, row: dict[str, Any]) -> Match | None:
        for text in row_texts(row):
            m = self.match(text)
            if m is not None:
                return m
        return None


def resolve_benchmarks(names: Sequence[str]) -> list[str]:
    """`all` -> every bundled benchmark; an unknown name is an error listing the known ones."""
    out: list[str] = []
    for name in names:
        if name == "all":
            out.extend(b for b in BENCHMARKS if b not in out)
        elif name not in BENCHMARKS:
            raise DataError(f"data.decontaminate: unknown benchmark {name!r}; use `all` or some of "
                            f"{', '.join(BENCHMARKS)}")
        elif name not in out:
            out.append(name)
    return out


def decontaminate(rows: list[dict[str, Any]], benchmarks: Sequence[str],
                  source: str = "data") -> tuple[list[dict[str, Any]], list[tuple[int, Match]]]:
    """(kept rows, [(row index, match)] of the dropped ones); logs a summary per benchmark."""
    index = NgramIndex.from_benchmarks(resolve_benchmarks(benchmarks))
    kept, dropped = [], []
    for i, row in enumerate(rows):
        m = index.match_row(row)
        if m is None:
            kept.append(row)
        else:
            dropped.append((i, m))
    if dropped:
        per: dict[str, int] = {}
        for _, m in dropped:
            per[m.benchmark] = per.get(m.benchmark, 0) + 1
        log.warning("data: dropped %d of %d rows of %s that share a problem with a benchmark %s "
                    "(first: row %d, %s %r)", len(dropped), len(rows), source, per, dropped[0][0],
                    dropped[0][1].kind, dropped[0][1].words)
    return kept, dropped


def decontaminate_rows(rows: Rows, benchmarks: Sequence[str]) -> Rows:
    """`rows` without those sharing a problem with `benchmarks`; an error if nothing is left."""
    kept, dropped = decontaminate(rows.rows, benchmarks, rows.source)
    if not kept:
        raise DataError(f"{rows.source}: every row shares a problem with a benchmark in data.decontaminate "
                        f"({dropped[0][1].benchmark} first); this is an evaluation set, not training data")
    return Rows(kept, rows.source, rows.skipped, rows.skip_reasons, len(dropped))
