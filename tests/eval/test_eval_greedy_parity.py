"""SmolLM2-135M-Instruct: greedy eval completions from vLLM equal HF `generate` greedy ones."""

import pytest

from nemo_r1.eval.runner import evaluate

pytestmark = pytest.mark.slow


def test_vllm_greedy_equals_hf_generate_greedy(tmp_path):
    from eval_helpers import read_samples

    from nemo_r1.embedded import ensure_smollm2

    model = str(ensure_smollm2())
    kw = dict(benchmarks=["gsm8k", "math500"], limit=2, n=1, temperature=0.0, max_new_tokens=64,
              progress=False, print_table=False, kv_cache_gib=0.5, max_model_len=1024)
    ours = evaluate(model, out_dir=tmp_path / "vllm", backend="vllm", **kw)
    base = evaluate(model, out_dir=tmp_path / "hf", backend="hf", **kw)
    for bench in ("gsm8k", "math500"):
        a = read_samples(tmp_path / "vllm" / "samples" / f"{bench}.jsonl")
        b = read_samples(tmp_path / "hf" / "samples" / f"{bench}.jsonl")
        assert len(a) == len(b) == 2
        for x, y in zip(a, b, strict=True):
            assert x["prompt"] == y["prompt"]
            assert x["completion"] == y["completion"], (bench, x["id"])
            assert x["length"] == y["length"] and x["finish_reason"] == y["finish_reason"]
            assert len(x["completion"]) > 40
    assert ours["benchmarks"] == base["benchmarks"]
