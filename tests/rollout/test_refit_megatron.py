"""Refit end to end: a tiny Llama trained one step with Megatron at TP2 x PP2 (4 gloo
ranks, CPU, fp32), refit into the replica leader's vLLM engine from the TP/PP shards, after which
vLLM's logprobs of fixed sequences equal Megatron's; before the refit they differ.

It also covers the colocated plumbing: only the leader builds an engine, every rank of the replica
receives the same rollouts, and `train/logprob_diff` of the rollouts is small."""

from __future__ import annotations

import pytest
import torch

from nemo_r1.distributed import run_on_cpu_ranks

pytestmark = [pytest.mark.slow, pytest.mark.multiproc]


def _megatron_logprobs(model, seqs: list[list[int]]) -> list[list[float]]:
    from nemo_r1.models.forward import forward_backward_logprobs

    width = max(map(len, seqs))
    toks = torch.tensor([s + [0] * (width - len(s)) for s in seqs])
    out = forward_backward_logprobs(model, [{"tokens": toks}], forward_only=True)
    lp = out.logprobs[0]
    return [lp[i, : len(s) - 1].tolist() for i, s in enumerate(seqs)]


def _rank(model_dir: str) -> dict:
    from megatron.core import parallel_state as mps

    from nemo_r1.distributed import init_distributed
    from nemo_r1.models.build import build_model
    from nemo_r1.models.config import model_info, read_hf_config
    from nemo_r1.models.hf_export import iter_hf_weights
    from nemo_r1.models.hf_import import load_hf_weights
    from nemo_r1.models.train import OptimSettings, setup_training, train_step
    from nemo_r1.rollout.agreement import diff_of_lists, logprob_diff
    from nemo_r1.rollout.base import EngineConfig, SamplingConfig
    from nemo_r1.rollout.colocated import ColocatedRollout

    layout = init_distributed(tp=2, pp=2)
    model = build_model(model_info(read_hf_config(model_dir), tp=2))
    load_hf_weights(model, model_dir)
    state = setup_training(model, OptimSettings(lr=1e-3, scheduler="constant"), total_steps=1)
    roll = ColocatedRollout(model_dir, EngineConfig(max_model_len=256, kv_cache_gib=0.0625),
                            group=mps.get_model_parallel_group(), tp=layout.tp)
    res: dict = {"has_engine": roll.engine is not None}

    prompts = [[1, 100 + 7 * i, 2000 + i, 3000 + 11 * i, 40 + i] for i in range(3)]
    rs = roll.generate(prompts, SamplingConfig(n=2, temperature=1.0, max_new_tokens=10, seed=5))
    res["rollouts"] = [(r.prompt_index, r.sample_index, r.completion_token_ids) for r in rs]
    seqs = [r.prompt_token_ids + r.completion_token_ids for r in rs]

    # the rollouts' own logprobs vs Megatron's on the generated tokens: train/logprob_diff
    m0 = _megatron_logprobs(state.model, seqs)
    gen = [lp[len(r.prompt_token_ids) - 1:] for lp, r in zip(m0, rs, strict=True)]
    res["rollout_vs_megatron"] = diff_of_lists(gen, [r.logprobs for r in rs])
    flat = torch.tensor([x for g in gen for x in g])
    res["metric"] = logprob_diff(flat, torch.tensor([x for r in rs for x in r.logprobs]), torch.ones_like(flat))

    def loss_fn(lp, mb):  # maximise the likelihood of the sequences: a real gradient step
        return -lp.sum() / lp.numel()

    _, step = train_step(state, [{"tokens": torch.tensor([s[:15] for s in seqs])}], loss_fn)
    res["grad_norm"] = step["grad_norm"]
    m1 = _megatron_logprobs(state.model, seqs)
    if roll.engine is not None:
        res["before_refit"] = diff_of_lists(m1, roll.engine.score(seqs))
    stats = roll.refit(iter_hf_weights(state.model, bucket_bytes=1 << 20))  # many small buckets
    res["tensors"] = stats.tensors
    if roll.engine is not None:
        res["after_refit"] = diff_of_lists(m1, roll.engine.score(seqs))
    roll.shutdown()
    torch.distributed.barrier()  # the trainer's world survives the engine
    return res


def test_megatron_tp2pp2_step_then_refit_matches_vllm(tmp_path, smollm2_dir):
    from rollout_tiny import make_tiny_llama

    model_dir = make_tiny_llama(str(tmp_path / "tiny"), smollm2_dir)
    results = run_on_cpu_ranks(_rank, 4, model_dir, timeout_s=600)
    assert [r["has_engine"] for r in results] == [True, False, False, False]
    assert all(r["rollouts"] == results[0]["rollouts"] for r in results)  # shared with the replica
    assert [(p, s) for p, s, _ in results[0]["rollouts"]] == [(i, j) for i in range(3) for j in range(2)]
    assert all(r["tensors"] == 2 + 4 * 9 for r in results)  # embed + final norm + 9 per layer (tied head)
    lead = results[0]
    # fp32 on both sides: the sampled tokens' logprobs agree with the trainer's before any step
    assert lead["rollout_vs_megatron"]["train/logprob_diff_max"] < 1e-3
    assert lead["metric"]["train/logprob_diff"] == pytest.approx(lead["rollout_vs_megatron"]["train/logprob_diff"])
    assert lead["grad_norm"] > 0
    assert lead["before_refit"]["train/logprob_diff"] > 1e-2  # the step moved Megatron, not vLLM
    assert lead["after_refit"]["train/logprob_diff"] < 1e-4
    assert lead["after_refit"]["train/logprob_diff_max"] < 1e-3
