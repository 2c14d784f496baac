"""Megatron on CPU: a 2-rank gloo run builds a TP=2 GPTModel (local spec) and runs forward+backward.

This is the proof that nemo_r1.platform's shim is enough for megatron-core on a CUDA-less torch.
"""

from __future__ import annotations

import math

import pytest
import torch

from nemo_r1.distributed import run_on_cpu_ranks

VOCAB = 256


def _tp2_forward_backward() -> dict:
    import torch.distributed as dist
    from megatron.core import parallel_state as ps
    from megatron.core.models.gpt import GPTModel
    from megatron.core.models.gpt.gpt_layer_specs import get_gpt_layer_local_spec
    from megatron.core.transformer.transformer_config import TransformerConfig

    from nemo_r1.distributed import init_distributed

    layout = init_distributed(tp=2, pp=1, seed=7)
    cfg = TransformerConfig(num_layers=2, hidden_size=128, num_attention_heads=4, num_query_groups=2,
                            kv_channels=64, ffn_hidden_size=256, normalization="RMSNorm", gated_linear_unit=True,
                            activation_func=torch.nn.functional.silu, add_bias_linear=False,
                            tensor_model_parallel_size=2, use_cpu_initialization=True, hidden_dropout=0.0,
                            attention_dropout=0.0)
    model = GPTModel(cfg, get_gpt_layer_local_spec(normalization="RMSNorm"), vocab_size=VOCAB,
                     max_sequence_length=32, position_embedding_type="rope")
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, VOCAB, (2, 16), generator=g)
    per_token = model(ids, torch.arange(16).expand(2, 16), attention_mask=None, labels=ids)
    loss = per_token.mean()
    loss.backward()
    grads = {n: p.grad for n, p in model.named_parameters()}
    qkv = grads["decoder.layers.0.self_attention.linear_qkv.weight"]
    norm = grads["decoder.layers.0.input_layernorm.weight"]
    both = [None, None]
    dist.all_gather_object(both, (qkv.clone(), norm.clone()), group=ps.get_tensor_model_parallel_group())
    return {"tp_rank": layout.tp_rank, "loss": loss.item(), "qkv_shape": tuple(qkv.shape),
            "all_finite": all(torch.isfinite(t).all().item() for t in grads.values()),
            "missing_grads": [n for n, t in grads.items() if t is None],
            "qkv_grads_differ": not torch.equal(both[0][0], both[1][0]),
            "norm_grad_max_diff": (both[0][1] - both[1][1]).abs().max().item()}


@pytest.mark.multiproc
@pytest.mark.timeout(300)
def test_tp2_gpt_forward_backward_on_cpu() -> None:
    r0, r1 = run_on_cpu_ranks(_tp2_forward_backward, 2)
    assert (r0["tp_rank"], r1["tp_rank"]) == (0, 1)
    # Both TP ranks see the same (vocab-parallel) cross-entropy; at init logits are ~0 so loss ~ ln V.
    assert r0["loss"] == pytest.approx(r1["loss"], abs=1e-6)
    assert abs(r0["loss"] - math.log(VOCAB)) < 0.1
    # qkv is column-parallel: each rank holds half of (q 4x64 + k 2x64 + v 2x64) = 512 rows.
    assert r0["qkv_shape"] == (256, 128)
    assert r0["all_finite"] and r1["all_finite"] and not r0["missing_grads"]
    assert r0["qkv_grads_differ"]  # sharded weights get different gradients
    assert r0["norm_grad_max_diff"] < 1e-6  # replicated norm weights get the same gradient
