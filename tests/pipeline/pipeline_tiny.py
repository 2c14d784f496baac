"""A tiny random Llama that ends some completions by itself, for the pipeline tests (a uniquely
named module: `conftest` is ambiguous across test folders)."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EOS_SCALE = 10.0
"""A random model over SmolLM2's 49k tokens almost never samples EOS; with EOS's (tied) embedding
10x longer it ends about half of its 16-token completions, so the `length` filter keeps some rows
and drops others (16 of 32 in the tiny pipeline) and SFT has documents that end in EOS."""


def make_stopping_llama(out: Path) -> Path:
    """tests/rollout/rollout_tiny.py's 4-layer Llama (SmolLM2 tokenizer) with EOS scaled up."""
    import torch
    from transformers import AutoModelForCausalLM

    from nemo_r1.embedded import ensure_smollm2

    sys.path.insert(0, str(ROOT / "tests" / "rollout"))
    from rollout_tiny import make_tiny_llama

    make_tiny_llama(str(out), str(ensure_smollm2()))
    model = AutoModelForCausalLM.from_pretrained(out)
    eos = model.config.eos_token_id
    with torch.no_grad():
        model.get_input_embeddings().weight[eos] *= EOS_SCALE
    model.save_pretrained(out)
    return out
