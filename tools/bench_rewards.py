"""Benchmark: score N completions with `accuracy` in one process vs the process pool, same inputs.

    .venv/bin/python tools/bench_rewards.py [--n 5000] [--workers 2]

Completions are MATH-500 gold answers boxed inside some filler text, half of them paired with
their own gold and half with another problem's, so both the equal and the unequal paths of
math-verify are timed. The pool is started (and its imports done) before timing, as in a trainer
where it lives across steps; its cold start is reported separately. Scores must be identical
(math-verify's wall-clock timeouts are the only way they can differ, under heavy CPU contention).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "math500.jsonl"


def make_batch(n: int, seed: int = 0) -> tuple[list[str], list[str]]:
    golds = [json.loads(line)["answer"] for line in open(DATA, encoding="utf-8")]
    rng = random.Random(seed)
    comps, answers = [], []
    for k in range(n):
        i = rng.randrange(len(golds))
        j = i if k % 2 == 0 else rng.randrange(len(golds))
        comps.append(f"Let me work through this carefully. Step {k % 7}: ... so the final answer is "
                     f"$\\boxed{{{golds[j]}}}$.")
        answers.append(golds[i])
    return comps, answers


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    args = ap.parse_args(argv)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from nemo_r1.rewards import get_reward

    comps, answers = make_batch(args.n)
    serial = get_reward("accuracy", workers=0)
    pooled = get_reward("accuracy", workers=args.workers, min_pool_batch=1)

    t0 = time.perf_counter()
    pooled(comps[:args.workers], answer=answers[:args.workers])  # spawn workers, import math-verify
    cold = time.perf_counter() - t0

    t0 = time.perf_counter()
    s_one = serial(comps, answer=answers)
    t_one = time.perf_counter() - t0
    t0 = time.perf_counter()
    s_pool = pooled(comps, answer=answers)
    t_pool = time.perf_counter() - t0

    differ = sum(a != b for a, b in zip(s_one, s_pool, strict=True))
    correct = sum(s == 1.0 for s in s_one)
    print(f"accuracy on {args.n} completions ({correct} correct, {sum(s is None for s in s_one)} None)")
    print(f"  one process : {t_one:8.2f} s  ({args.n / t_one:7.0f} items/s)")
    print(f"  pool x{args.workers:<5}: {t_pool:8.2f} s  ({args.n / t_pool:7.0f} items/s)   cold start {cold:.2f} s")
    print(f"  ratio (one process / pool) = {t_one / t_pool:.2f}x on {os.cpu_count()} CPU cores, "
          f"load average {os.getloadavg()[0]:.1f}")
    if differ:  # only math-verify's wall-clock timeouts can make them differ (CPU contention)
        print(f"  {differ} scores differ between the two runs (math-verify timeouts)", file=sys.stderr)
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
