"""The colocated engine across 2 gloo ranks (CPU): only the leader holds a vLLM engine, every rank
gets the rollouts, and a refit whose tensors are all-gathered from per-rank shards on the fly (what
the Megatron export does) lands in the engine."""

from __future__ import annotations

import json
import os

import pytest
import torch

from nemo_r1.distributed import run_on_cpu_ranks

pytestmark = [pytest.mark.slow, pytest.mark.multiproc]


def make_tiny_llama(out_dir: str, tokenizer_dir: str, tie: bool = False, seed: int = 0) -> str:
    """A random 2-layer Llama with head_dim 64 (vLLM CPU rejects 16) and SmolLM2's tokenizer."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=49152, hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=1, head_dim=64, max_position_embeddings=512,
                      tie_word_embeddings=tie, bos_token_id=1, eos_token_id=2)
    model = LlamaForCausalLM(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.2)  # larger than init so random text is not uniform noise
    model.save_pretrained(out_dir)
    AutoTokenizer.from_pretrained(tokenizer_dir).save_pretrained(out_dir)
    return out_dir


def _sharded_weights(state: dict[str, torch.Tensor], rank: int, world: int):
    """Each rank keeps a row-slice of every tensor; yield full tensors gathered per tensor."""
    import torch.distributed as dist

    for name, full in state.items():
        shard = full.chunk(world, dim=0)[rank].contiguous()
        parts = [torch.empty_like(p) for p in full.chunk(world, dim=0)]
        dist.all_gather(parts, shard)
        yield name, torch.cat(parts, dim=0)


def _worker(model_dir: str, out: str) -> None:
    """One rank of a TP2 Megatron layout (platform shim applied), which is one replica."""
    import torch.distributed as dist
    from megatron.core import parallel_state as mps

    from nemo_r1.distributed import init_distributed

    layout = init_distributed(tp=2, pp=1)
    rank, world = layout.rank, layout.world_size
    from safetensors.torch import load_file

    from nemo_r1.rollout.base import EngineConfig, SamplingConfig
    from nemo_r1.rollout.colocated import ColocatedRollout

    roll = ColocatedRollout(model_dir, EngineConfig(max_model_len=256, kv_cache_gib=0.0625),
                            group=mps.get_model_parallel_group(), tp=layout.tp)
    assert (roll.engine is not None) == (rank == 0)
    assert torch.get_num_threads() == 1  # the engine gave the trainer its threads back
    prompts = [[1, 100 + i, 200 + i, 300 + i] for i in range(3)]
    rs = roll.generate(prompts, SamplingConfig(n=2, temperature=1.0, max_new_tokens=8, seed=5))
    state = load_file(os.path.join(model_dir, "model.safetensors"))
    g = torch.Generator().manual_seed(1)
    new = {k: v + 0.1 * torch.randn(v.shape, generator=g) for k, v in state.items()}
    seqs = [r.prompt_token_ids + r.completion_token_ids for r in rs]
    before = roll.engine.score(seqs) if roll.engine else None
    stats = roll.refit(_sharded_weights(new, rank, world))
    result = {"rollouts": [[r.prompt_index, r.sample_index, r.completion_token_ids, r.logprobs] for r in rs],
              "tensors": stats.tensors}
    if roll.engine is not None:
        from transformers import AutoModelForCausalLM

        from nemo_r1.rollout.agreement import diff_of_lists

        hf = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
        hf.load_state_dict(new)
        ref = []
        with torch.no_grad():
            for s in seqs:
                lp = hf(torch.tensor([s])).logits[0, :-1].log_softmax(-1)
                ref.append(lp.gather(-1, torch.tensor(s[1:]).unsqueeze(-1)).squeeze(-1).tolist())
        after = roll.engine.score(seqs)
        result["after_vs_hf"] = diff_of_lists(after, ref)
        result["before_vs_after"] = diff_of_lists(before, after)
    with open(f"{out}/rank{rank}.json", "w") as f:
        json.dump(result, f)
    dist.barrier()


def test_leader_engine_generates_for_all_ranks_and_refits_from_shards(tmp_path, smollm2_dir):
    model_dir = make_tiny_llama(str(tmp_path / "tiny"), smollm2_dir)
    run_on_cpu_ranks(_worker, 2, model_dir, str(tmp_path))
    r0, r1 = (json.loads((tmp_path / f"rank{i}.json").read_text()) for i in range(2))
    assert r0["rollouts"] == r1["rollouts"]  # every rank of the replica got the same rollouts
    assert [(p, s) for p, s, _, _ in r0["rollouts"]] == [(i, j) for i in range(3) for j in range(2)]
    assert all(len(ids) == len(lps) > 0 for _, _, ids, lps in r0["rollouts"])
    assert r0["tensors"] == r1["tensors"] == 2 + 2 * 9 + 1  # embed, norm, head + 9 per layer
    assert r0["before_vs_after"]["train/logprob_diff"] > 0.05
    assert r0["after_vs_hf"]["train/logprob_diff"] < 1e-4 and r0["after_vs_hf"]["train/logprob_diff_max"] < 1e-3
