"""Tiny random HF models (head_dim 64) of each supported family, batches, and HF reference math.

Shared by the model tests and imported by their spawned ranks (so: a uniquely named module).
"""

from __future__ import annotations

from pathlib import Path

import torch

VOCAB = 300  # not a multiple of 128: padding differs between TP1 (384) and TP2 (512)
SEQ = 12
FAMILIES = ("llama", "qwen2", "qwen3")


def make_tiny(family: str, out: Path, seed: int = 0) -> Path:
    """Save a random 4-layer model: llama tied + llama3 RoPE scaling, qwen2 untied with qkv bias,
    qwen3 untied with q/k norm. Norm weights and biases are perturbed so mistakes show up."""
    from transformers import (
        LlamaConfig,
        LlamaForCausalLM,
        Qwen2Config,
        Qwen2ForCausalLM,
        Qwen3Config,
        Qwen3ForCausalLM,
    )

    torch.manual_seed(seed)
    common = dict(hidden_size=128, intermediate_size=256, num_hidden_layers=4, num_attention_heads=4,
                  num_key_value_heads=2, head_dim=64, vocab_size=VOCAB, max_position_embeddings=256,
                  rms_norm_eps=1e-5)
    if family == "llama":
        cfg = LlamaConfig(**common, tie_word_embeddings=True, rope_parameters={
            "rope_type": "llama3", "rope_theta": 50000.0, "factor": 4.0, "low_freq_factor": 1.0,
            "high_freq_factor": 4.0, "original_max_position_embeddings": 64})
        model = LlamaForCausalLM(cfg)
    elif family == "qwen2":
        model = Qwen2ForCausalLM(Qwen2Config(**common, tie_word_embeddings=False))
    elif family == "qwen3":
        model = Qwen3ForCausalLM(Qwen3Config(**common, tie_word_embeddings=False))
    else:
        raise ValueError(family)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name or "bias" in name:
                p.add_(torch.randn_like(p) * 0.1)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    return out


def tokens(seed: int = 1, batch: int = 2) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, VOCAB, (batch, SEQ), generator=g)


def train_batch(seed: int) -> dict[str, torch.Tensor]:
    """4 right-padded sequences (lengths 12, 9, 12, 7) with a loss mask on real next tokens."""
    t = tokens(seed, batch=4)
    lengths = torch.tensor([12, 9, 12, 7])
    mask = (torch.arange(SEQ - 1)[None] < (lengths[:, None] - 1)).float()
    t = torch.where(torch.arange(SEQ)[None] < lengths[:, None], t, torch.zeros_like(t))
    return {"tokens": t, "mask": mask}


def global_tokens(batch: dict[str, torch.Tensor]) -> float:
    return float(batch["mask"].sum())


def hf_loss_and_grads(hf_dir: Path, batch: dict[str, torch.Tensor]) -> tuple[float, dict[str, torch.Tensor]]:
    """The reference: -sum(logprob * mask) / tokens with HF transformers, and its gradients."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float32)
    logits = model(batch["tokens"]).logits.float()
    lp = torch.log_softmax(logits[:, :-1], -1).gather(-1, batch["tokens"][:, 1:, None])[..., 0]
    loss = -(lp * batch["mask"]).sum() / global_tokens(batch)
    loss.backward()
    return loss.item(), {n: p.grad.detach().clone() for n, p in model.named_parameters()}


def hf_logits(hf_dir: Path, toks: torch.Tensor) -> torch.Tensor:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float32)
    with torch.no_grad():
        return model(toks).logits.float()
