"""The real embedded model (SmolLM2-135M-Instruct) in Megatron at tensor parallel 3 vs HF transformers.

SmolLM2 has 9 query heads and 3 KV heads, so TP must divide 3: TP2 is refused with a clear
error, TP3 is the smallest real split (3 gloo ranks).
"""

from __future__ import annotations

import pytest
import torch

from nemo_r1.distributed import run_on_cpu_ranks

PROMPT = [{"role": "user", "content": "What is the capital of France? Answer in one word."}]


def _tp3_logits(hf_dir: str, ids: torch.Tensor) -> dict:
    from megatron.core import parallel_state as ps

    from nemo_r1.distributed import init_distributed
    from nemo_r1.models import forward_backward_logprobs, forward_logits, load_pretrained

    init_distributed(tp=3, pp=1)
    model = load_pretrained(hf_dir)
    logits = forward_logits(model, ids)
    lp = forward_backward_logprobs(model, [{"tokens": ids}], forward_only=True).logprobs[0]
    shard = model.output_layer.weight.shape if model.output_layer.weight is not None else \
        model.embedding.word_embeddings.weight.shape
    return {"tp_rank": ps.get_tensor_model_parallel_rank(), "logits": logits, "logprobs": lp,
            "vocab_shard": tuple(shard)}


@pytest.fixture(scope="module")
def smollm2() -> str:
    from nemo_r1.embedded import ensure_smollm2

    return str(ensure_smollm2())


def test_tp2_is_refused_naming_valid_sizes(smollm2: str) -> None:
    from nemo_r1.models import model_info, read_hf_config

    with pytest.raises(ValueError, match=r"num_key_value_heads=3.*valid tensor-parallel sizes.*\[1, 3\]"):
        model_info(read_hf_config(smollm2), tp=2)


@pytest.mark.slow
@pytest.mark.multiproc
@pytest.mark.timeout(900)
def test_smollm2_tp3_matches_hf_logits(smollm2: str) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(smollm2)
    text = tok.apply_chat_template(PROMPT, tokenize=False, add_generation_prompt=True) + "The capital of France is Paris"
    ids = torch.tensor([tok(text)["input_ids"]])
    results = run_on_cpu_ranks(_tp3_logits, 3, smollm2, ids, timeout_s=800)
    hf = AutoModelForCausalLM.from_pretrained(smollm2, dtype=torch.float32)
    with torch.no_grad():
        ref = hf(ids).logits.float()
    ref_lp = torch.log_softmax(ref[:, :-1], -1).gather(-1, ids[:, 1:, None])[..., 0]
    assert [r["tp_rank"] for r in results] == [0, 1, 2]
    assert results[0]["vocab_shard"] == (49152 // 3, 576)  # 49152 = 128 * 384: no padding needed at TP3
    for r in results:
        assert (r["logits"] - ref).abs().max().item() < 1e-4
        assert (r["logprobs"] - ref_lp).abs().max().item() < 1e-4
    # and the model is the real one: it predicts " Paris" after "The capital of France is"
    paris = tok(" Paris", add_special_tokens=False)["input_ids"][0]
    assert results[0]["logits"][0, -2].argmax().item() == paris
