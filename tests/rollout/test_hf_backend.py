"""The HF reference backend through the same colocated wrapper the trainer uses (`rollout.backend=hf`)."""

from __future__ import annotations

import torch

from nemo_r1.rollout.base import EngineConfig, SamplingConfig
from nemo_r1.rollout.colocated import ColocatedRollout


def test_hf_backend_generates_groups_and_refits(tmp_path, smollm2_dir):
    from rollout_tiny import make_tiny_llama
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    model_dir = make_tiny_llama(str(tmp_path / "tiny"), smollm2_dir)
    roll = ColocatedRollout(model_dir, EngineConfig(backend="hf"))
    prompts = [[1, 100, 200], [1, 300, 400, 500]]
    rs = roll.generate(prompts, SamplingConfig(n=3, temperature=1.0, max_new_tokens=6, seed=0))
    assert [(r.prompt_index, r.sample_index) for r in rs] == [(i, j) for i in range(2) for j in range(3)]
    assert all(r.prompt_token_ids == prompts[r.prompt_index] for r in rs)
    assert all(len(r.logprobs) == len(r.completion_token_ids) <= 6 for r in rs)
    assert all(r.finish_reason == ("length" if len(r.completion_token_ids) == 6 else "stop") for r in rs)
    # at T=1 without top-k/top-p the sampled tokens' logprobs are the model's own
    seqs = [r.prompt_token_ids + r.completion_token_ids for r in rs]
    scored = roll.engine.score(seqs)
    for r, s in zip(rs, scored, strict=True):
        assert torch.allclose(torch.tensor(s[len(r.prompt_token_ids) - 1:]), torch.tensor(r.logprobs), atol=1e-5)

    new = {k: v * 1.5 for k, v in load_file(f"{model_dir}/model.safetensors").items()}
    stats = roll.refit(iter(new.items()))
    assert stats.tensors == len(new)
    ref = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    ref.load_state_dict(new, strict=False)
    with torch.no_grad():
        lp = ref(torch.tensor([seqs[0]])).logits[0, :-1].log_softmax(-1)
    want = lp.gather(-1, torch.tensor(seqs[0][1:])[:, None])[:, 0]
    assert torch.allclose(torch.tensor(roll.engine.score(seqs[:1])[0]), want, atol=1e-5)
    roll.shutdown()
