"""GRPO trainer features through the real loop on a tiny Llama: dynamic sampling with refill, the
overlong filter, SIGTERM save-and-exit then resume."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> str:
    sys.path.insert(0, str(HERE.parent / "rollout"))
    from rollout_tiny import make_tiny_llama

    from nemo_r1.embedded import ensure_smollm2

    return make_tiny_llama(str(tmp_path_factory.mktemp("tiny")), str(ensure_smollm2()))


def steps_of(out: Path, model: str, *overrides: str) -> list[dict]:
    proc = subprocess.run([sys.executable, str(HERE / "features_run.py"), str(out), model, *overrides],
                          capture_output=True, text=True, timeout=540)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.split("STEPS ", 1)[1])


def groups(values: list, g: int = 2) -> list[list]:
    return [values[i:i + g] for i in range(0, len(values), g)]


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_dynamic_sampling_refills_with_informative_groups_only(model, tmp_path):
    on = steps_of(tmp_path / "on", model, "grpo.dynamic_sampling=true", "grpo.max_refill_rounds=4")[0]
    off = steps_of(tmp_path / "off", model)[0]
    # without it, the step trains every group, uninformative ones included
    assert len(off["rewards"]) == 8 and any(len(set(g)) == 1 for g in groups(off["rewards"]))
    # with it, the batch is refilled back to 8 sequences, every group with a reward spread
    assert len(on["rewards"]) == 8
    assert all(len(set(g)) > 1 for g in groups(on["rewards"]))


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_overlong_filter_trains_no_token_of_a_truncated_sample(model, tmp_path):
    # a random tiny model rarely says EOS: with 4 new tokens nearly every sample is truncated
    on = steps_of(tmp_path / "on", model, "rollout.max_new_tokens=4", "grpo.overlong_filter=true")[0]
    off = steps_of(tmp_path / "off", model, "rollout.max_new_tokens=4")[0]
    assert any(on["truncated"]) and on["truncated"] == off["truncated"]
    for cut, on_tokens, off_tokens in zip(on["truncated"], on["loss_tokens"], off["loss_tokens"], strict=True):
        assert on_tokens == (0 if cut else off_tokens)
        assert off_tokens > 0


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_sigterm_saves_at_the_step_boundary_and_resume_continues(model, tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "nemo_r1.cli", "grpo", "--config", str(ROOT / "configs/grpo/demo.yaml"),
           f"output_dir={out}", f"model.path={model}", "train.max_steps=50", "rollout.max_new_tokens=8",
           "grpo.prompts_per_step=2", "grpo.num_generations=2", "train.micro_batch_size=4", "checkpoint.every=0",
           "logging.tensorboard=false", "logging.plots=false", "data.max_samples=8", "rollout.kv_cache_gib=0.125"]
    metrics = out / "metrics.jsonl"
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 400
    while time.time() < deadline and proc.poll() is None:
        if metrics.exists() and metrics.read_text().count("\n") >= 2:
            break
        time.sleep(0.1)
    assert proc.poll() is None, f"run ended before SIGTERM: {proc.stderr.read()[-3000:]}"
    os.kill(proc.pid, signal.SIGTERM)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    rows = [json.loads(x) for x in metrics.read_text().splitlines()]
    done = [r["step"] for r in rows]
    assert 2 <= done[-1] < 50, "stopped at a step boundary, well before max_steps"
    # every row has the memory group: the engine's KV cache is the 0.125 GiB asked for (whole blocks
    # of it), the process tree's peak so far never falls and is at least its size now
    for r in rows:
        assert 0.12 < r["memory/engine_kv_gb"] <= 0.125, r
        assert r["memory/peak_rss_gb"] >= r["memory/rss_gb"] > 0.3, r
    peaks = [r["memory/peak_rss_gb"] for r in rows]
    assert peaks == sorted(peaks)
    ckpts = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert ckpts == [f"step_{done[-1]}"], "one checkpoint, of the last finished step"
    # resume: the remaining steps only, and the metrics continue from there
    more = subprocess.run(cmd[:-1] + ["rollout.kv_cache_gib=0.125", f"train.max_steps={done[-1] + 1}",
                                      "train.resume=auto"], cwd=ROOT, capture_output=True, text=True, timeout=400)
    assert more.returncode == 0, more.stderr[-3000:]
    after = [json.loads(x)["step"] for x in metrics.read_text().splitlines()]
    assert after == list(range(1, done[-1] + 2))
