"""Build this rank's model from whatever `model.path` names: an HF dir or a Megatron checkpoint."""

from __future__ import annotations

from pathlib import Path

import torch

from nemo_r1.models.build import build_model
from nemo_r1.models.checkpoint import META_FILE, checkpoint_model_info, load_checkpoint
from nemo_r1.models.config import model_info, read_hf_config


def resolve_hf_path(path: str | Path) -> Path:
    """`embedded:smollm2` -> the cached SmolLM2 dir; anything else as given."""
    if str(path) == "embedded:smollm2":
        from nemo_r1.embedded import ensure_smollm2

        return Path(ensure_smollm2())
    return Path(path)


def load_pretrained(path: str | Path, dtype: str = "float32") -> torch.nn.Module:
    """Collective: the GPTModel for the current TP x PP layout, weights loaded from `path`.

    An HF dir (config.json + safetensors) is read shard by shard on each rank; a Megatron
    checkpoint (convert output or checkpoints/step_N) is loaded with resharding, weights only.
    """
    from megatron.core import parallel_state as ps

    p = resolve_hf_path(path)
    if (p / META_FILE).exists():
        model = build_model(checkpoint_model_info(p), dtype=dtype)
        load_checkpoint(p, model, load_rng=False)
        return model
    if (p / "config.json").exists():
        from nemo_r1.models.hf_import import load_hf_weights

        info = model_info(read_hf_config(p), tp=ps.get_tensor_model_parallel_world_size(), source=str(p / "config.json"))
        model = build_model(info, dtype=dtype)
        load_hf_weights(model, p)
        model.nemo_hf_dir = str(p)  # checkpoints copy its tokenizer/config files
        return model
    raise FileNotFoundError(f"model.path={path}: neither an HF model dir (config.json) nor a nemo-r1 Megatron "
                            f"checkpoint ({META_FILE})")
