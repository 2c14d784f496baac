"""Helpers for eval tests (a unique module name: `conftest` is ambiguous across test folders)."""

import json
from pathlib import Path


def build_tiny_llama(path: Path, seed: int = 0) -> Path:
    """2 layers, hidden 128 (2 heads of 64, 1 KV head): head dim 64 so vLLM accepts it."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from nemo_r1.embedded import ensure_smollm2

    tok = AutoTokenizer.from_pretrained(ensure_smollm2())
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=1, head_dim=64, max_position_embeddings=1024,
                      tie_word_embeddings=True, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(cfg).to(torch.float32)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def math_rows(count: int) -> list[dict]:
    return [{"id": f"p{i}", "problem": f"What is {i} + {i + 1}?", "answer": str(2 * i + 1)} for i in range(count)]


def read_samples(path: Path) -> list[dict]:
    return [json.loads(x) for x in Path(path).read_text().splitlines()]
