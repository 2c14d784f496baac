"""`accuracy`: math-verify equivalence of the completion's final answer with the gold answer.

Batches are scored in a spawned process pool. A script that scores at top level (no
`if __name__ == "__main__":` guard) makes the pool's workers die at start-up; this is detected at
once and the batch is scored in the calling process instead (one warning), or, off the main
thread, where the CPU-time budget cannot work, it raises an error that names the fix.

Three bugs seen in open-r1/TRL reward code are ruled out here and pinned by tests:
- argument order: math-verify's `verify(gold, target)` is not symmetric (an interval gold against
  an inequality answer differs from the reverse), so gold always goes first;
- a gold answer that does not parse scores None (and a warning), never 1.0;
- a completion without a final answer (no `\\boxed{}` / `<answer>`) scores 0.0.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from nemo_r1.rewards.extract import extract_final_answer
from nemo_r1.rewards.pool import TIMED_OUT, PoolStartupError, default_workers, shared_pool
from nemo_r1.rewards.registry import Scores, require_column

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AccuracyParams:
    workers: int | None = None
    """Scoring processes; None = all cores (max 8); 0 = score in this process (main thread only)."""
    cpu_timeout_s: float = 5.0
    """CPU seconds for parsing the gold, and again for parsing + verifying the answer."""
    hard_timeout_s: float = 60.0
    """Wall limit per item, enforced by killing the worker (for C code no signal can interrupt)."""
    min_pool_batch: int = 8
    """Smaller batches are scored in-process (when on the main thread): a pool round-trip costs more."""

    def __post_init__(self) -> None:
        if self.workers is not None and self.workers < 0:
            raise ValueError(f"workers must be >= 0 or None, got {self.workers}")
        if self.cpu_timeout_s <= 0:
            raise ValueError(f"cpu_timeout_s must be > 0, got {self.cpu_timeout_s}")


# Status codes returned by the worker next to the score.
OK, NO_ANSWER, BAD_GOLD, GOLD_TIMEOUT, ERROR = "ok", "no_answer", "bad_gold", "gold_timeout", "error"


class _CpuTimeout(BaseException):
    """Raised by the CPU-time alarm; a BaseException so math-verify's `except Exception` cannot eat it."""


def _on_cpu_alarm(signum: int, frame: Any) -> None:
    raise _CpuTimeout


@contextmanager
def _cpu_limit(seconds: float) -> Iterator[None]:
    """Raise _CpuTimeout after `seconds` of this process's CPU time.

    Why CPU time and not math-verify's own timeouts: those are wall-clock `signal.alarm`s, which
    are not reliable under CPU contention (they fire on easy inputs, so correct answers score 0 and
    good golds look unparseable); CPU time is. They are disabled (timeout 0) and this replaces them.
    """
    old = signal.signal(signal.SIGPROF, _on_cpu_alarm)
    signal.setitimer(signal.ITIMER_PROF, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)
        signal.signal(signal.SIGPROF, old)


@lru_cache(maxsize=4096)
def _parse_gold(gold: str) -> tuple[Any, ...]:
    from math_verify import parse

    text = gold if "\\boxed" in gold else "\\boxed{" + gold + "}"
    parsed = parse(text, parsing_timeout=0)
    # Only a string fallback (no sympy object) means math-verify could not read the gold.
    if not any(not isinstance(p, str) for p in parsed):
        return ()
    return tuple(parsed)


def score_one(item: tuple[str, str, float]) -> tuple[float | None, str]:
    """(score, status) for one (completion, gold, cpu budget); module-level so the pool can pickle it.

    A gold that runs out of CPU scores None (not the completion's fault); an answer that does
    scores 0.0, so a model gains nothing by emitting expressions too costly to check. The pool's
    hard wall limit gives the same 0.0 (see `accuracy`).
    """
    completion, gold, cpu_s = item
    try:
        from math_verify import parse, verify

        if not gold or not gold.strip():
            return None, BAD_GOLD
        try:
            with _cpu_limit(cpu_s):
                gold_parsed = _parse_gold(gold.strip())
        except _CpuTimeout:
            return None, GOLD_TIMEOUT
        if not gold_parsed:
            return None, BAD_GOLD
        answer = extract_final_answer(completion)
        if answer is None:
            return 0.0, NO_ANSWER
        try:
            with _cpu_limit(cpu_s):
                pred = parse("\\boxed{" + answer + "}", parsing_timeout=0)
                return (float(verify(list(gold_parsed), pred, timeout_seconds=0)) if pred else 0.0), OK
        except _CpuTimeout:
            return 0.0, OK
    except Exception as e:  # noqa: BLE001 - one bad item must not fail the batch
        return 0.0, f"{ERROR}: {type(e).__name__}: {e}"


_warned: set[str] = set()
_warn_lock = threading.Lock()


def _warn_bad_gold(gold: str) -> None:
    with _warn_lock:
        if gold in _warned or len(_warned) > 10_000:
            return
        _warned.add(gold)
    log.warning("accuracy: gold answer %r does not parse with math-verify; its completions score None "
                "(check the `answer` column mapping)", gold[:200])


_fallback_warned = False


def _warm_up() -> None:
    """Run once in each pool worker before it takes items: math-verify's lazy imports and first
    parse are slow, and must not count against the first item's wall limit."""
    score_one(("\\boxed{\\frac{1}{2}}", "0.5", 60.0))


def _score_in_pool(items: list[tuple[str, str, float]], workers: int, hard_timeout_s: float,
                   main_thread: bool) -> list[Any]:
    """Pool scoring; if the workers cannot start, score here (main thread) or raise, never None."""
    global _fallback_warned
    try:
        return shared_pool(workers, hard_timeout_s, ("math_verify",), _warm_up).map(score_one, items)
    except PoolStartupError as e:
        if not main_thread:
            raise RuntimeError(f"accuracy: {e}. Scoring in this process instead needs the main thread "
                               "(the CPU-time budget is a signal handler): add that guard, or call "
                               "the reward from the main thread") from None
        if not _fallback_warned:
            _fallback_warned = True
            log.warning("accuracy: %s. Scoring in this process instead (slower, and no hard wall "
                        "limit per item; only the CPU-time budget).", e)
        return [score_one(it) for it in items]


def accuracy(completions: list[str], p: AccuracyParams, **columns: Any) -> Scores:
    """1.0 if the last \\boxed{}/<answer> equals the `answer` column under math-verify, else 0.0; None if
    the gold does not parse. An answer too costly to check (CPU budget or hard wall limit) scores 0.0."""
    golds = require_column("accuracy", columns, "answer")
    items = [(c, "" if g is None else str(g), p.cpu_timeout_s) for c, g in zip(completions, golds, strict=True)]
    workers = default_workers() if p.workers is None else p.workers
    main_thread = threading.current_thread() is threading.main_thread()
    if workers == 0 and not main_thread:
        raise RuntimeError("accuracy(workers=0) needs the main thread (its CPU-time budget is a signal); "
                           "use workers >= 1 from other threads")
    if workers == 0 or (len(items) < p.min_pool_batch and main_thread):
        results = [score_one(it) for it in items]
    else:
        results = _score_in_pool(items, workers, p.hard_timeout_s, main_thread)
    scores: Scores = []
    for (_, gold, _), res in zip(items, results, strict=True):
        if res is TIMED_OUT:
            # The gold is parsed (under the CPU budget, None when over it) before the answer, so an
            # item killed at the wall limit or dying in C code is the answer's cost: 0.0 as the CPU
            # budget gives, or a model could trade a wrong answer for a None that trains nothing.
            scores.append(0.0)
            continue
        score, status = res
        if status == BAD_GOLD:
            _warn_bad_gold(gold)
        elif status == GOLD_TIMEOUT:
            log.warning("accuracy: parsing gold %r took over the CPU budget; scored None", gold[:200])
        elif status.startswith(ERROR):
            log.warning("accuracy: scoring failed (%s); scored 0.0", status)
        scores.append(score)
    return scores
