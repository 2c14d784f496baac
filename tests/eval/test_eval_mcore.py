"""A Megatron checkpoint given as --model is exported to HF on the fly, once, and evaluates like
the HF model it came from."""

import json

import pytest
from eval_helpers import math_rows, read_samples, write_jsonl

from nemo_r1.eval.runner import evaluate

pytestmark = pytest.mark.slow


def test_megatron_checkpoint_evaluates_like_its_hf_source(tiny_model, tmp_path):
    from nemo_r1.models.convert import convert_hf_to_mcore

    ckpt = convert_hf_to_mcore(tiny_model, tmp_path / "step_7")
    data = write_jsonl(tmp_path / "d.jsonl", math_rows(3))
    # sampled (T=1) on a random model: any weight difference would change the tokens
    kw = dict(data=str(data), n=2, temperature=1.0, max_new_tokens=8, backend="hf", progress=False,
              print_table=False)
    a = evaluate(str(ckpt), out_dir=tmp_path / "from_mcore", **kw)
    b = evaluate(tiny_model, out_dir=tmp_path / "from_hf", **kw)
    export = tmp_path / "from_mcore" / "hf_model" / "step_7"
    assert a["model_path"] == str(export) and any(export.glob("*.safetensors"))
    sa = read_samples(tmp_path / "from_mcore" / "samples" / "d.jsonl")
    sb = read_samples(tmp_path / "from_hf" / "samples" / "d.jsonl")
    assert [s["completion"] for s in sa] == [s["completion"] for s in sb]
    assert len({s["completion"] for s in sa}) > 1
    assert b["benchmarks"] == a["benchmarks"]

    # a rerun reuses the export (and, all samples being on disk, generates nothing)
    stamp = max(p.stat().st_mtime_ns for p in export.iterdir())
    again = evaluate(str(ckpt), out_dir=tmp_path / "from_mcore", **kw)
    assert max(p.stat().st_mtime_ns for p in export.iterdir()) == stamp
    assert again["throughput"]["generated_problems"] == 0
    assert json.loads((tmp_path / "from_mcore" / "results.json").read_text())["benchmarks"] == a["benchmarks"]
