"""Benchmark decontamination: drop training rows that share a problem (exact, or one 8-gram) with a
benchmark the project evaluates on.

Text is compared as normalised words (`words`), so case, whitespace, punctuation and LaTeX markup
(`\\left(`, `\\,`, `\\displaystyle`, `\\dfrac` for `\\frac`, ...) cannot hide a copy. `data.decontaminate`
checks every text field a model is trained on (problem, solution, prompt/completion, chat turns);
`nemo-r1 decontaminate` (`nemo_r1.data.decontaminate`) checks chosen columns of a file. Both use this
one index, and each match names the benchmark, its row id and the words shared.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from nemo_r1.data.bundled import BENCHMARKS, benchmark_path, read_jsonl
from nemo_r1.data.loading import DataError, Rows

log = logging.getLogger(__name__)

NGRAM = 8
TEXT_FIELDS = ("problem", "question", "prompt", "solution", "completion", "text")
"""Row columns checked, besides the contents of `messages`."""

# LaTeX commands that change how a formula looks, not what it says: dropped (their arguments stay,
# so `\text{and}` reads `and`). Matched after lower-casing, so `\Big` and `\big` are one entry.
_LATEX_NOISE = frozenset(
    "left right middle big bigl bigr bigm bigg biggl biggr biggm displaystyle textstyle scriptstyle "
    "scriptscriptstyle limits nolimits quad qquad enspace thinspace negthinspace medspace thickspace "
    "text textrm textbf textit textsf texttt textnormal mathrm mathbf mathit mathsf mathtt mathnormal "
    "boldsymbol bm operatorname mbox hbox lvert rvert vert mid".split())
# Spellings of one symbol: each maps to one name.
_LATEX_ALIASES = {"dfrac": "frac", "tfrac": "frac", "cfrac": "frac", "dbinom": "binom", "tbinom": "binom",
                  "le": "leq", "leqslant": "leq", "ge": "geq", "geqslant": "geq", "ne": "neq",
                  "ldots": "dots", "cdots": "dots", "dotsc": "dots", "dotsb": "dots", "to": "rightarrow"}
_LATEX_SPACE_ARG = re.compile(r"\\(?:hspace|vspace|kern|mkern|hskip|mskip)\*?\s*(?:\{[^}]*\}|-?[\d.]+\s*[a-z]{2})")
_LATEX_FRAC_DIGITS = re.compile(r"\\([dtc]?frac)\s*(\d)\s*(\d)")
"""`\\frac12` is `\\frac{1}{2}`."""
_LATEX_COMMAND = re.compile(r"\\([a-z]+)")
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
_WORD = re.compile(r"[a-z]+|[0-9]+")
"""Letters and digits split apart, so `3x` and `3 x` read alike."""


def _latex_command(m: re.Match[str]) -> str:
    name = m.group(1)
    return " " if name in _LATEX_NOISE else f" {_LATEX_ALIASES.get(name, name)} "


def words(text: str) -> list[str]:
    """The normalised words of `text`: the one reading that both benchmark and training rows get.

    Unicode is NFKC-folded and lower-cased; LaTeX spacing, sizing and font commands are dropped and
    aliases unified; `1,000` is `1000`; everything but letters and digits separates words.
    """
    text = unicodedata.normalize("NFKC", text).lower()
    if "\\" in text:
        text = _LATEX_SPACE_ARG.sub(" ", text)
        text = _LATEX_FRAC_DIGITS.sub(r"\\\1{\2}{\3}", text)
        text = _LATEX_COMMAND.sub(_latex_command, text)
    return _WORD.findall(_THOUSANDS.sub("", text))


def ngrams(tokens: Sequence[str], n: int = NGRAM) -> Iterable[tuple[str, ...]]:
    return (tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1))


def row_texts(row: dict[str, Any]) -> list[str]:
    """The text a model sees or is trained on in one row."""
    out = [row[k] for k in TEXT_FIELDS if isinstance(row.get(k), str)]
    for msg in row.get("messages") or []:
        if isinstance(msg, dict) and isinstance(msg.get("content"), str):
            out.append(msg["content"])
    return out


def benchmark_rows(name: str) -> list[tuple[str, str]]:
    """(row id, problem text) of one bundled benchmark; the id is its id column, else `name-<index>`."""
    if name not in BENCHMARKS:
        raise DataError(f"unknown benchmark {name!r} (known: {', '.join(BENCHMARKS)})")
    bench = BENCHMARKS[name]
    out = []
    for i, (_, row) in enumerate(read_jsonl(benchmark_path(bench))):
        rid = row.get(bench.id_key) if bench.id_key else None
        out.append((str(rid) if rid is not None else f"{name}-{i}", str(row.get(bench.problem_key, ""))))
    return out


@dataclass(frozen=True)
class Match:
    benchmark: str
    kind: str
    """`exact` (the whole normalised text) or `8-gram`."""
    words: str
    """The shared text, normalised: the whole text, or the longest run of matching n-grams."""
    row_id: str = ""
    """The benchmark row it shares text with."""
    share: float = 1.0
    """Share of the text's n-grams found in any benchmark (1.0 for an exact copy)."""


Hit = tuple[str, str]
"""(benchmark, row id)."""


class NgramIndex:
    """Every 8-gram (and every whole normalised problem) of a set of benchmarks, with its row."""

    def __init__(self, n: int = NGRAM) -> None:
        self.n = n
        self.grams: dict[tuple[str, ...], Hit] = {}
        self.exact: dict[str, Hit] = {}
        self.rows: dict[str, int] = {}
        """Rows indexed per benchmark."""

    @classmethod
    def from_benchmarks(cls, names: Iterable[str], n: int = NGRAM) -> NgramIndex:
        index = cls(n)
        for name in names:
            rows = benchmark_rows(name)
            index.add(name, [text for _, text in rows], [rid for rid, _ in rows])
        return index

    def add(self, name: str, texts: Iterable[str], ids: Sequence[str] | None = None) -> None:
        """Index `texts` as benchmark `name`; `ids` name its rows (default `name-<index>`)."""
        count = 0
        for i, text in enumerate(texts):
            hit = (name, ids[i] if ids is not None else f"{name}-{i}")
            count += 1
            toks = words(text)
            if toks:
                self.exact.setdefault(" ".join(toks), hit)
            for g in ngrams(toks, self.n):
                self.grams.setdefault(g, hit)
        self.rows[name] = self.rows.get(name, 0) + count

    def match(self, text: str, threshold: float = 0.0) -> Match | None:
        """The benchmark row `text` copies, or None.

        An exact copy always matches. Otherwise the text matches when at least one of its n-grams is
        a benchmark's and the share of such n-grams is at least `threshold` (0: one hit is enough);
        the match names the benchmark row holding most of them.
        """
        toks = words(text)
        joined = " ".join(toks)
        if joined in self.exact:
            bench, rid = self.exact[joined]
            return Match(bench, "exact", joined, rid)
        hits: list[tuple[int, Hit]] = []
        for i, g in enumerate(ngrams(toks, self.n)):
            hit = self.grams.get(g)
            if hit is not None:
                hits.append((i, hit))
        if not hits:
            return None
        share = len(hits) / (len(toks) - self.n + 1)
        if share < threshold:
            return None
        counts: dict[Hit, int] = {}
        for _, hit in hits:
            counts[hit] = counts.get(hit, 0) + 1
        best = max(counts, key=counts.__getitem__)  # ties: the first seen
        start, end, run_start, prev = -1, -1, -1, -2
        for i, hit in hits:  # the longest run of consecutive n-grams of the best row
            if hit != best:
                continue
            run_start = run_start if i == prev + 1 else i
            prev = i
            if start < 0 or i - run_start > end - start:
                start, end = run_start, i
        return Match(best[0], f"{self.n}-gram", " ".join(toks[start:end + self.n]), best[1], share)

    def match_row(self, row: dict[str, Any]) -> Match | None:
        for text in row_texts(row):
            m = self.match(text)
            if m is not None:
                return m
        return None


def resolve_benchmarks(names: Sequence[str], key: str = "data.decontaminate") -> list[str]:
    """`all` -> every bundled benchmark; an unknown name is an error naming `key` and the known ones."""
    out: list[str] = []
    for name in names:
        if name == "all":
            out.extend(b for b in BENCHMARKS if b not in out)
        elif name not in BENCHMARKS:
            raise DataError(f"{key}: unknown benchmark {name!r}; use `all` or some of "
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
