"""Benchmark scores from per-sample correctness: pass@1, unbiased pass@k, maj@n, standard error.

Pure functions over plain lists so they are tested against hand-computed values and shared by the
native runner and the lighteval bridge. `None` correctness means "cannot be scored" (gold does not
parse): such problems are counted as `unscorable` and left out of every mean, never scored correct.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k (Chen et al. 2021): 1 - C(n-c, k) / C(n, k), for n samples with c correct.

    Computed as a running product instead of binomials so that n in the thousands neither
    overflows nor loses precision.
    """
    if not 0 <= c <= n:
        raise ValueError(f"pass_at_k: need 0 <= c <= n, got n={n}, c={c}")
    if not 1 <= k <= n:
        raise ValueError(f"pass_at_k: need 1 <= k <= n, got k={k}, n={n}")
    if n - c < k:
        return 1.0
    prod = 1.0
    for i in range(n - c + 1, n + 1):
        prod *= 1.0 - k / i
    return 1.0 - prod


def default_ks(n: int) -> list[int]:
    """k values reported for n samples: powers of two below n, and n itself."""
    ks = [k for k in (1, 2, 4, 8, 16, 32, 64, 128, 256) if k < n]
    return sorted(set(ks + [n]))


def majority_correct(answers: Sequence[str | None], correct: Sequence[bool | None]) -> bool | None:
    """maj@n for one problem: is the most frequent extracted answer correct?

    Votes go to extracted answers (normalised strings); samples without an answer do not vote.
    Ties go to the answer seen first, so the result does not depend on dict order. No votes at all
    counts as wrong; an unscorable problem (any `None` correctness) stays `None`.
    """
    if any(c is None for c in correct):
        return None
    votes = Counter(a for a in answers if a is not None)
    if not votes:
        return False
    best = max(votes.values())
    winner = next(a for a in answers if a is not None and votes[a] == best)
    return bool(next(c for a, c in zip(answers, correct, strict=True) if a == winner))


@dataclass
class ProblemSamples:
    """What the scorer needs from the n samples of one problem."""

    correct: list[bool | None]
    answers: list[str | None]
    lengths: list[int]


def summarize(problems: Sequence[ProblemSamples], ks: Sequence[int] | None = None) -> dict[str, float | int]:
    """Aggregate scores of one benchmark.

    pass@1 is the mean over problems of the mean correctness over the n samples; `stderr` is the
    standard error of that mean across problems (sample std / sqrt(P)), the number to quote as
    +- next to pass@1. pass@k uses the unbiased estimator per problem, then the mean.
    """
    if not problems:
        raise ValueError("summarize: no problems to score")
    n = len(problems[0].correct)
    if any(len(p.correct) != n for p in problems):
        raise ValueError("summarize: every problem needs the same number of samples")
    ks = list(ks) if ks is not None else default_ks(n)
    if any(not 1 <= k <= n for k in ks):
        raise ValueError(f"summarize: k values {ks} must lie in [1, n={n}]")

    scorable = [p for p in problems if not any(c is None for c in p.correct)]
    per_problem = [sum(bool(c) for c in p.correct) / n for p in scorable]
    num_samples = len(problems) * n
    out: dict[str, float | int] = {
        "problems": len(problems),
        "n": n,
        "scored_problems": len(scorable),
        "unscorable": len(problems) - len(scorable),
    }
    if scorable:
        mean = sum(per_problem) / len(per_problem)
        var = sum((x - mean) ** 2 for x in per_problem) / (len(per_problem) - 1) if len(per_problem) > 1 else 0.0
        out["pass@1"] = mean
        out["stderr"] = math.sqrt(var / len(per_problem))
        for k in ks:
            if k == 1:
                continue
            out[f"pass@{k}"] = sum(pass_at_k(n, sum(bool(c) for c in p.correct), k) for p in scorable) / len(scorable)
        maj = [majority_correct(p.answers, p.correct) for p in scorable]
        out[f"maj@{n}"] = sum(bool(m) for m in maj) / len(maj)
    else:
        out["pass@1"] = float("nan")
        out["stderr"] = float("nan")
    out["extraction_failure_rate"] = sum(a is None for p in problems for a in p.answers) / num_samples
    out["mean_length"] = sum(sum(p.lengths) for p in problems) / num_samples
    return out
