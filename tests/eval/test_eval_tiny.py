"""End to end on a tiny random Llama with the real vLLM engine: seeds reproduce, kills resume."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from eval_helpers import math_rows, read_samples, write_jsonl

from nemo_r1.eval.engines import EngineSpec, VllmEngine
from nemo_r1.eval.runner import evaluate

pytestmark = pytest.mark.slow

SETTINGS = dict(n=2, temperature=0.8, top_p=0.95, max_new_tokens=12, progress=False, print_table=False)


@pytest.fixture(scope="module")
def engine(tiny_model):
    return VllmEngine(EngineSpec(model=tiny_model, kv_cache_gib=0.25))


def by_key(samples):
    return {(s["id"], s["sample"]): s["completion"] for s in samples}


def test_same_seed_same_samples_whatever_the_batching(tiny_model, engine, tmp_path):
    data = write_jsonl(tmp_path / "d.jsonl", math_rows(5))
    a = evaluate(tiny_model, data=str(data), seed=0, out_dir=tmp_path / "a", engine=engine, **SETTINGS)
    b = evaluate(tiny_model, data=str(data), seed=0, out_dir=tmp_path / "b", engine=engine,
                 max_batch=2, **SETTINGS)  # one problem per batch instead of all five
    c = evaluate(tiny_model, data=str(data), seed=1, out_dir=tmp_path / "c", engine=engine, **SETTINGS)
    sa, sb, sc = (by_key(read_samples(tmp_path / d / "samples" / "d.jsonl")) for d in "abc")
    assert len(sa) == 10
    assert sa == sb
    assert a["benchmarks"] == b["benchmarks"]
    different = sum(sa[k] != sc[k] for k in sa)
    assert different >= 8, f"seed 1 reproduced seed 0 on {10 - different}/10 samples"
    # the two samples of one problem differ too (each has its own seed)
    assert sum(sa[(f"p{i}", 0)] != sa[(f"p{i}", 1)] for i in range(5)) >= 4
    assert c["benchmarks"]["d"]["problems"] == 5


def test_resume_after_kill_gives_the_uninterrupted_samples(tiny_model, engine, tmp_path):
    data = write_jsonl(tmp_path / "d.jsonl", math_rows(40))
    ref = evaluate(tiny_model, data=str(data), seed=3, out_dir=tmp_path / "ref", engine=engine, **SETTINGS)

    out = tmp_path / "killed"
    samples = out / "samples" / "d.jsonl"
    cmd = [sys.executable, "-m", "nemo_r1.eval.cli", "--model", tiny_model, "--data", str(data), "--n", "2",
           "--temperature", "0.8", "--max-new-tokens", "12", "--seed", "3", "--out", str(out),
           "--max-batch", "2", "--kv-cache-gib", "0.25", "--no-progress"]
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE", VLLM_LOGGING_LEVEL="ERROR")
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if samples.exists() and samples.read_text().count("\n") >= 4:
            break
        time.sleep(0.02)
    assert proc.poll() is None, f"run ended before it could be killed: {proc.stderr.read().decode()[-2000:]}"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    written = samples.read_text().count("\n")
    assert 4 <= written < 80, written
    with open(samples, "a") as f:  # and a torn write, as a kill inside os.write would leave
        f.write('{"id": "p39", "sample": 0, "prompt": "tru')

    res = evaluate(tiny_model, data=str(data), seed=3, out_dir=out, engine=engine, **SETTINGS)
    final = read_samples(samples)
    keys = [(s["id"], s["sample"]) for s in final]
    assert len(keys) == len(set(keys)) == 80, "duplicate or missing samples after resume"
    assert by_key(final) == by_key(read_samples(tmp_path / "ref" / "samples" / "d.jsonl"))
    assert res["benchmarks"] == ref["benchmarks"]
    assert res["throughput"]["generated_problems"] < 40  # only the missing problems were generated


def test_unparseable_gold_is_reported_not_scored(tiny_model, tmp_path):
    from nemo_r1.cli import main  # the console script's entry: `nemo-r1 eval ...`

    rows = math_rows(3) + [{"id": "bad1", "problem": "What is x?", "answer": "\\frac{3}{"},
                           {"id": "bad2", "problem": "What is y?", "answer": ""}]
    data = write_jsonl(tmp_path / "d.jsonl", rows)
    rc = main(["eval", "--model", tiny_model, "--data", str(data), "--n", "1", "--temperature", "0", "--backend", "hf",
               "--max-new-tokens", "4", "--out", str(tmp_path / "o"), "--no-progress"])
    assert rc == 0
    import json

    res = json.loads((tmp_path / "o" / "results.json").read_text())["benchmarks"]["d"]
    assert res["unscorable"] == 2 and res["scored_problems"] == 3 and res["problems"] == 5
    assert res["pass@1"] == 0.0
    recs = {s["id"]: s for s in read_samples(tmp_path / "o" / "samples" / "d.jsonl")}
    assert recs["bad1"]["correct"] is None and recs["bad2"]["correct"] is None
    assert recs["p0"]["correct"] is False


def test_settings_change_in_same_out_dir_is_refused(tiny_model, engine, tmp_path):
    from nemo_r1.eval.benchmarks import DataError

    data = write_jsonl(tmp_path / "d.jsonl", math_rows(1))
    evaluate(tiny_model, data=str(data), out_dir=tmp_path / "o", engine=engine, **SETTINGS)
    with pytest.raises(DataError, match="temperature"):
        evaluate(tiny_model, data=str(data), out_dir=tmp_path / "o", engine=engine,
                 **{**SETTINGS, "temperature": 0.5})
    # samples made from another prompt (e.g. an older template) are refused, not mixed in
    samples = tmp_path / "o" / "samples" / "d.jsonl"
    samples.write_text(samples.read_text().replace("Please reason step by step", "Reason step by step"))
    with pytest.raises(DataError, match="different prompt"):
        evaluate(tiny_model, data=str(data), out_dir=tmp_path / "o", engine=engine, **SETTINGS)


def test_data_parallel_workers_match_one_process(tiny_model, tmp_path):
    data = write_jsonl(tmp_path / "d.jsonl", math_rows(6))
    kw = dict(n=1, temperature=0.0, max_new_tokens=8, backend="hf", progress=False, print_table=False,
              max_batch=2)
    evaluate(tiny_model, data=str(data), out_dir=tmp_path / "one", dp=1, **kw)
    evaluate(tiny_model, data=str(data), out_dir=tmp_path / "two", dp=2, **kw)
    one = by_key(read_samples(Path(tmp_path / "one" / "samples" / "d.jsonl")))
    two = by_key(read_samples(Path(tmp_path / "two" / "samples" / "d.jsonl")))
    assert len(one) == 6 and one == two
