"""A tiny random Llama for rollout tests (imported by spawned ranks, hence a uniquely named module)."""

from __future__ import annotations

import torch


def make_tiny_llama(out_dir: str, tokenizer_dir: str, seed: int = 0) -> str:
    """4 layers, head_dim 64 (vLLM CPU rejects 16), 4 heads / 2 KV heads (TP2 splits them), tied
    embeddings and llama3 RoPE scaling like SmolLM2/Llama-3, SmolLM2's tokenizer (vLLM needs one).
    Weights are scaled up and norms perturbed so that layout or conversion mistakes show up."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=49152, hidden_size=128, intermediate_size=256, num_hidden_layers=4,
                      num_attention_heads=4, num_key_value_heads=2, head_dim=64, max_position_embeddings=512,
                      rms_norm_eps=1e-5, tie_word_embeddings=True, bos_token_id=1, eos_token_id=2,
                      rope_parameters={"rope_type": "llama3", "rope_theta": 50000.0, "factor": 4.0,
                                       "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                       "original_max_position_embeddings": 64})
    model = LlamaForCausalLM(cfg)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.add_(torch.randn_like(p) * 0.1)
            else:
                p.normal_(0.0, 0.1)
    model.save_pretrained(out_dir)
    AutoTokenizer.from_pretrained(tokenizer_dir).save_pretrained(out_dir)
    return out_dir
