"""MBPP+ end to end: every canonical solution scores 1.0 on all 378 rows; empty and wrong ones score 0.

Expected outputs come from running each canonical solution on base_input + plus_input in the
sandbox (inputs on which it needs more than `max_input_s` CPU seconds are dropped to keep this
test near a minute; the count is asserted small), then the canonical solutions are scored as
completions, in a separate set of sandboxed runs.
"""

from __future__ import annotations

import json
import os

import pytest

from nemo_r1.data.bundled import data_dir
from nemo_r1.rewards import get_reward
from nemo_r1.rewards.mbpp import ReferenceLimits, function_call_info

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(os.geteuid() != 0, reason="runs 378 programs; needs the namespace sandbox (root)")]
ROWS = [json.loads(line) for line in open(data_dir() / "mbppplus.jsonl", encoding="utf-8")]


@pytest.fixture(scope="module")
def infos():
    return function_call_info(ROWS, ReferenceLimits(max_input_s=0.5))


def test_reference_outputs_cover_nearly_all_inputs(infos):
    total = sum(len(r["base_input"]) + len(r["plus_input"] or []) for r in ROWS)
    kept = sum(len(i["inputs"]) for i in infos)
    assert len(ROWS) == 378 and total - kept < 0.005 * total  # < 0.5% of inputs dropped
    assert all(i["inputs"] for i in infos)


def test_canonical_solutions_score_one(infos):
    code = get_reward("code", cpu_s=60, wall_s=120)
    comps = [f"```python\n{r['canonical_solution']}\n```" for r in ROWS]
    scores = code(comps, verification_info=infos)
    assert [(r["task_id"], s) for r, s in zip(ROWS, scores, strict=True) if s != 1.0] == []


def test_empty_and_wrong_solutions_score_zero(infos):
    code = get_reward("code", cpu_s=10, wall_s=30)
    empty = code(["I cannot solve this."] * len(ROWS), verification_info=infos)
    wrong = code([f"```python\ndef {r['entry_point']}(*args, **kwargs):\n    return 'not-the-answer'\n```"
                  for r in ROWS], verification_info=infos)
    assert empty == [0.0] * len(ROWS)
    assert [(r["task_id"], s) for r, s in zip(ROWS, wrong, strict=True) if s != 0.0] == []
