"""The GRPO loop frees the colocated engine while it trains and brings it back before generating."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_loop_sleeps_the_engine_for_training_and_wakes_it_after_refit(tmp_path):
    sys.path.insert(0, str(HERE.parent / "rollout"))
    from rollout_tiny import make_tiny_llama

    from nemo_r1.embedded import ensure_smollm2

    model = make_tiny_llama(str(tmp_path / "tiny"), str(ensure_smollm2()))
    proc = subprocess.run([sys.executable, str(HERE / "colocation_run.py"), str(tmp_path / "run"), model],
                          capture_output=True, text=True, timeout=540)
    assert proc.returncode == 0, proc.stderr[-4000:]
    calls = json.loads(proc.stdout.split("CALLS ", 1)[1])
    # per step: sample, release the engine's memory, train, refit (wakes weights, then the cache)
    assert calls == ["generate", "sleep", "refit", "wake_up"] * 2
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2]
    assert all(r["timing/reward_s"] >= 0 and r["timing/generate_s"] > 0 for r in rows)
