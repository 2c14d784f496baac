"""The embedded SmolLM2 checkpoint: built once from the GGUF, loads in HF, talks sense, is deterministic."""

import json

import pytest
import torch

from nemo_r1.embedded import ensure_smollm2


@pytest.mark.slow
def test_smollm2_generates_sensible_text_and_deterministic_logits():
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = ensure_smollm2()
    assert ensure_smollm2() == path  # second call reuses the cache
    cfg = json.loads((path / "config.json").read_text())
    assert cfg["architectures"] == ["LlamaForCausalLM"] and "quantization_config" not in cfg
    tok = AutoTokenizer.from_pretrained(path)
    assert tok.chat_template and "<|im_start|>" in tok.chat_template
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    enc = tok.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                  add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.no_grad():
        out = model.generate(**enc, max_new_tokens=12, do_sample=False)
        text = tok.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=True)
        assert "Paris" in text
        a = model(**enc).logits
        b = model(**enc).logits
    assert torch.equal(a, b)
    assert a.shape[-1] == 49152 and torch.isfinite(a).all()
