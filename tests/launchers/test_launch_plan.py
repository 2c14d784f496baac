"""`nemo-r1 plan`: parameter counts against real HF models, memory terms, layout choice."""

from __future__ import annotations

import json

import pytest
import torch
import transformers

from launchers.plan import GIB, ModelShape, plan, plan_main

QWEN7B = "configs/cluster/models/qwen2.5-math-7b.json"


def _hf_numel(cfg: dict) -> int:
    config = transformers.AutoConfig.for_model(**cfg)
    with torch.device("meta"):
        model = transformers.AutoModelForCausalLM.from_config(config)
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("cfg", [
    # Llama with GQA and tied embeddings (SmolLM2-135M's shape)
    dict(model_type="llama", hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
         num_attention_heads=9, num_key_value_heads=3, vocab_size=49152, tie_word_embeddings=True),
    # Qwen2 with qkv bias and untied embeddings (a small Qwen2.5 shape)
    dict(model_type="qwen2", hidden_size=896, intermediate_size=4864, num_hidden_layers=4,
         num_attention_heads=14, num_key_value_heads=2, vocab_size=151936, tie_word_embeddings=False),
    # Qwen3: explicit head_dim different from hidden/heads
    dict(model_type="qwen3", hidden_size=1024, intermediate_size=3072, num_hidden_layers=2, head_dim=128,
         num_attention_heads=16, num_key_value_heads=8, vocab_size=151936, tie_word_embeddings=True),
])
def test_param_count_matches_transformers(cfg: dict) -> None:
    shape = ModelShape.from_hf(cfg)
    extra = 0
    if cfg["model_type"] == "qwen3":  # q_norm and k_norm weights per layer (head_dim each)
        extra = cfg["num_hidden_layers"] * 2 * cfg["head_dim"]
    assert shape.total_params() + extra == _hf_numel(cfg)


def test_qwen_math_7b_terms() -> None:
    cfg = json.load(open(QWEN7B))
    shape = ModelShape.from_hf(cfg)
    assert abs(shape.total_params() - 7.615e9) < 0.01e9  # Qwen2.5-7B: 7.61B
    r = plan(cfg, nodes=2, gpus_per_node=8, seq_len=4096, micro_batch_size=1, rollout_seqs=1024)
    by = {(e.tp, e.pp): e for e in r.layouts}
    one = by[(1, 1)]
    n = shape.total_params()
    assert one.weights_gib == pytest.approx(n * 2 / GIB, rel=1e-6)
    assert one.grads_gib == pytest.approx(n * 4 / GIB, rel=1e-6)
    assert one.optimizer_gib == pytest.approx(n * 12 / 16 / GIB, rel=1e-6)  # distributed over DP=16
    # TP2 halves weights, and with sequence parallelism halves activations
    two = by[(2, 1)]
    assert two.weights_gib == pytest.approx(one.weights_gib / 2, rel=1e-6)
    assert two.activations_gib == pytest.approx(one.activations_gib / 2, rel=1e-6)
    # KV cache: 1024 seqs / 8 engines x 4096 tokens x 2 (k,v) x 28 layers x 512 kv dims x 2 B / TP2
    assert two.kv_cache_gib == pytest.approx(128 * 4096 * 2 * 28 * 512 * 2 / 2 / GIB, rel=1e-6)
    # every layout keeps TP inside a node, TP | heads and kv heads, PP | layers
    assert {e.tp for e in r.layouts} == {1, 2, 4}  # TP8 does not divide 28 heads
    assert all(28 % e.pp == 0 and e.tp * e.pp * e.dp == 16 for e in r.layouts)
    assert (r.recommended.tp, r.recommended.pp, r.recommended.dp) == (2, 1, 8)
    assert not one.fits and r.recommended.fits


def test_longer_sequences_need_more_model_parallelism() -> None:
    cfg = json.load(open(QWEN7B))
    short = plan(cfg, nodes=4, gpus_per_node=8, seq_len=4096).recommended
    long = plan(cfg, nodes=4, gpus_per_node=8, seq_len=32768).recommended
    assert short is not None and long is not None
    assert long.tp * long.pp > short.tp * short.pp
    recompute = plan(cfg, nodes=4, gpus_per_node=8, seq_len=32768, recompute=True).recommended
    assert recompute is not None and recompute.tp * recompute.pp < long.tp * long.pp


def test_nothing_fits_says_what_to_do() -> None:
    cfg = json.load(open(QWEN7B))
    r = plan(cfg, nodes=1, gpus_per_node=1, gpu_mem_gib=24)
    assert r.recommended is None and "no layout fits" in r.advice[0]


def test_cli_reads_training_config(capsys: pytest.CaptureFixture[str]) -> None:
    rc = plan_main(["--config", "configs/grpo/qwen2.5-math-7b_grpo.yaml", "--model-config", QWEN7B,
                    "--nodes", "2", "--gpus-per-node", "8"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "recommended: parallel.tensor=2 parallel.pipeline=1 (data parallel 8)" in out
    assert "KV cache for 128 sequences x 4096 tokens" in out  # 64 prompts x 16 generations / 8 engines
    with pytest.raises(SystemExit, match="no HF config"):
        plan_main(["--model-config", "/nonexistent/dir", "--nodes", "1"])


def test_cli_takes_sequence_parallel_from_the_config(capsys: pytest.CaptureFixture[str]) -> None:
    """The estimate uses the parallel.sequence_parallel the training run would build with."""
    base = ["--config", "configs/grpo/qwen2.5-math-7b_grpo.yaml", "--model-config", QWEN7B, "--nodes", "2", "--json"]
    reports = {}
    for sp in ("true", "false"):
        assert plan_main([*base, f"parallel.sequence_parallel={sp}"]) in (0, 1)
        reports[sp] = json.loads(capsys.readouterr().out)
    assert reports["true"] != reports["false"]  # activations outside the TP regions split only with SP
    assert plan_main([*base, "--no-sequence-parallel"]) in (0, 1)
    assert json.loads(capsys.readouterr().out) == reports["false"]


def test_sequence_parallel_reaches_megatron_and_is_refused_on_cpu() -> None:
    from nemo_r1.models.config import sequence_parallel_overrides

    assert sequence_parallel_overrides(True, 2, cuda=True) == {"sequence_parallel": True}
    assert sequence_parallel_overrides(True, 1, cuda=True) == {}  # nothing to split over
    assert sequence_parallel_overrides(False, 4, cuda=True) == {}
    with pytest.raises(ValueError, match="set parallel.sequence_parallel=false on CPU"):
        sequence_parallel_overrides(True, 2, cuda=False)
