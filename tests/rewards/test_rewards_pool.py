"""The scoring pool never fails silently: workers that cannot start are detected at once, hung or
crashed items are marked alone (accuracy scores them 0.0, a too-costly answer), and None never
stands for "the pool did not work"."""

from __future__ import annotations

import importlib
import json
import logging
import os
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from nemo_r1.rewards import get_reward
from nemo_r1.rewards.pool import TIMED_OUT, PoolStartupError, ScoringPool

accuracy_mod = importlib.import_module("nemo_r1.rewards.accuracy")  # the package attribute is the function

COMPS = ["\\boxed{1}", "\\boxed{3}", "\\boxed{\\frac{1}{2}}", "no final answer", "\\boxed{x^2}",
         "\\boxed{7}", "\\boxed{0.25}", "\\boxed{10}"]
GOLDS = ["1", "2", "0.5", "4", "x^2", "8", "\\frac{1}{4}", "11"]
EXPECTED = [1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.0]


def test_unguarded_script_scores_in_process_with_one_warning(tmp_path):
    # Spawned workers re-import the main script; without the __main__ guard they die at start-up.
    # The old pool retried them until the wall limit, item after item (16 min, all None).
    script = tmp_path / "score.py"
    script.write_text(textwrap.dedent(f"""\
        import json
        from nemo_r1.rewards import get_reward

        acc = get_reward("accuracy", workers=2, min_pool_batch=1)
        print(json.dumps(acc({COMPS!r}, answer={GOLDS!r})))
        print(json.dumps(acc({COMPS[::-1]!r}, answer={GOLDS[::-1]!r})))
        """))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"}
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-3000:]
    first, second = (json.loads(line) for line in proc.stdout.strip().splitlines()[-2:])
    assert first == EXPECTED and second == EXPECTED[::-1]
    assert time.monotonic() - t0 < 60
    assert proc.stderr.count("Scoring in this process instead") == 1, proc.stderr[-3000:]
    assert 'if __name__ == "__main__":' in proc.stderr


def test_workers_that_cannot_start_raise_at_once_and_are_not_respawned():
    pool = ScoringPool(workers=2, hard_timeout_s=30.0, imports=("nemo_r1_no_such_module",))
    try:
        t0 = time.monotonic()
        with pytest.raises(PoolStartupError, match="exited before it started"):
            pool.map(abs, [-1, -2, -3])
        assert time.monotonic() - t0 < 30  # not the wall limit, not a retry loop
        t0 = time.monotonic()
        with pytest.raises(PoolStartupError, match="__main__"):
            pool.map(abs, [-1])
        assert time.monotonic() - t0 < 0.5  # remembered: no second spawn
    finally:
        pool.close()


def _broken_pool(*args, **kwargs) -> ScoringPool:
    pool = ScoringPool(1)
    pool.broken = "a scoring worker exited before it started (test)"
    return pool


def test_accuracy_falls_back_on_the_main_thread_and_raises_off_it(monkeypatch, caplog):
    monkeypatch.setattr(accuracy_mod, "shared_pool", _broken_pool)
    monkeypatch.setattr(accuracy_mod, "_fallback_warned", False)
    fn = get_reward("accuracy", workers=2, min_pool_batch=1)
    with caplog.at_level(logging.WARNING, logger="nemo_r1.rewards.accuracy"):
        assert fn(COMPS, answer=GOLDS) == EXPECTED
        assert fn(COMPS[:2], answer=GOLDS[:2]) == EXPECTED[:2]
    assert caplog.text.count("Scoring in this process instead") == 1
    errors: list[BaseException] = []

    def score_in_thread() -> None:
        try:
            fn(COMPS, answer=GOLDS)
        except BaseException as e:  # noqa: BLE001 - checked below
            errors.append(e)

    t = threading.Thread(target=score_in_thread)
    t.start()
    t.join(60)
    assert len(errors) == 1 and isinstance(errors[0], RuntimeError)
    assert "main thread" in str(errors[0]) and "exited before it started" in str(errors[0])


def test_hung_and_crashed_items_score_none_alone_and_errors_propagate():
    pool = ScoringPool(workers=2, hard_timeout_s=2.0)
    try:
        items = ["1+1", "__import__('time').sleep(60)", "2*3", "__import__('os')._exit(3)", "7-1", "8"]
        t0 = time.monotonic()
        out = pool.map(eval, items)
        assert time.monotonic() - t0 < 40
        assert out[1] is TIMED_OUT and out[3] is TIMED_OUT  # killed at the wall limit / died
        assert [out[i] for i in (0, 2, 4, 5)] == [2, 6, 6, 8]
        with pytest.raises(ZeroDivisionError):
            pool.map(eval, ["1", "1/0", "2"])
        assert pool.map(eval, ["3", "4"]) == [3, 4]  # no stale results from the failed call
    finally:
        pool.close()


def test_accuracy_hung_item_scores_zero_and_the_rest_keep_their_scores():
    fn = get_reward("accuracy", workers=2, min_pool_batch=1, hard_timeout_s=3.0)
    comps = list(COMPS)
    comps[3] = "\\boxed{9^{9^{9^{9}}}}"  # 5 s of CPU in sympy: past the 3 s wall limit
    scores = fn(comps, answer=GOLDS)
    assert scores[3] == 0.0  # an answer too costly to check, as under the CPU budget
    assert scores[:3] + scores[4:] == EXPECTED[:3] + EXPECTED[4:]
