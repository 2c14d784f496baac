"""Build a megatron GPTModel for this rank's pipeline stage from a `ModelInfo`.

GPU: the transformer-engine layer spec (fused kernels). CPU: megatron's local spec (plain torch
modules), never importing transformer-engine.
"""

from __future__ import annotations

from typing import Any

import torch

from nemo_r1.models.config import ModelInfo, transformer_config
from nemo_r1.platform import cuda_available


def layer_spec(info: ModelInfo, use_te: bool):
    from megatron.core.models.gpt import gpt_layer_specs as specs

    if use_te:
        return specs.get_gpt_layer_with_transformer_engine_spec(qk_layernorm=info.spec.qk_norm)
    from nemo_r1.models.attention import SDPADotProductAttention
    from nemo_r1.platform import install_cpu_rope

    install_cpu_rope()  # fused CPU RoPE (falls back to megatron's for layouts it does not cover)
    spec = specs.get_gpt_layer_local_spec(qk_layernorm=info.spec.qk_norm, normalization="RMSNorm")
    spec.submodules.self_attention.submodules.core_attention = SDPADotProductAttention
    return spec


def build_model(info: ModelInfo, dtype: str = "float32", init_weights: bool = False,
                use_te: bool | None = None, **config_overrides: Any):
    """This rank's GPTModel (its PP stage, its TP shard). Weights are uninitialised unless
    `init_weights` (they are normally loaded right after, from HF or a checkpoint)."""
    from megatron.core import parallel_state as ps
    from megatron.core.models.gpt import GPTModel

    cpu = not cuda_available()
    use_te = (not cpu) if use_te is None else use_te
    tp = ps.get_tensor_model_parallel_world_size()
    pp = ps.get_pipeline_model_parallel_world_size()
    if info.padded_vocab_size % tp:
        raise ValueError(f"padded vocab {info.padded_vocab_size} is not divisible by parallel.tensor={tp}")
    if not use_te:  # the local spec's SwiGLU: nemo_r1.models.fused on CPU, megatron's jit-fused otherwise
        config_overrides = {"bias_activation_fusion": True, **config_overrides}
    cfg = transformer_config(info, tp, pp, dtype=dtype, cpu=cpu, perform_initialization=init_weights,
                             **config_overrides)
    model = GPTModel(
        cfg, layer_spec(info, use_te), vocab_size=info.padded_vocab_size,
        max_sequence_length=info.max_position_embeddings, pre_process=ps.is_pipeline_first_stage(),
        post_process=ps.is_pipeline_last_stage(), share_embeddings_and_output_weights=info.tied,
        position_embedding_type="rope", rotary_base=info.rope_theta, rotary_percent=1.0,
    )
    if not use_te:
        from nemo_r1.models import fused

        fused.install(model)  # CPU SwiGLU (megatron's bias_swiglu_impl hook) and RMSNorm
    if not init_weights:
        _mark_tensor_parallel_weights(model)
    if info.rope_scaling is not None:
        _llama3_rope(model, info.rope_scaling)
    if not cpu:
        model.cuda(torch.cuda.current_device())
    model.nemo_info = info  # read by conversion/checkpointing; plain attribute, not a submodule
    return model


def _mark_tensor_parallel_weights(model: torch.nn.Module) -> None:
    """Tag TP-sharded weights as megatron would have when initialising them.

    megatron-core sets `tensor_model_parallel` on a weight only inside its init functions, i.e.
    not with perform_initialization=False (we load weights instead). Untagged shards count as
    TP duplicates, so the grad norm (and clipping) would see only TP rank 0's shard.
    """
    from megatron.core.tensor_parallel import layers

    for mod in model.modules():
        if isinstance(mod, layers.ColumnParallelLinear | layers.VocabParallelEmbedding):
            dim = 0
        elif isinstance(mod, layers.RowParallelLinear):
            dim = 1
        else:  # transformer-engine linears say how they are split
            dim = {"column": 0, "row": 1}.get(getattr(mod, "parallel_mode", None))
        w = getattr(mod, "weight", None)
        if dim is not None and isinstance(w, torch.nn.Parameter) and not hasattr(w, "tensor_model_parallel"):
            layers.set_tensor_model_parallel_attributes(w, True, dim, 1)


def _llama3_rope(model: torch.nn.Module, rope: dict[str, Any]) -> None:
    """Llama-3 frequency scaling with the config's own factors (megatron's flag fixes all but one)."""
    emb = model.rotary_pos_emb
    emb.inv_freq = emb._apply_scaling(
        emb.inv_freq, factor=float(rope["factor"]), low_freq_factor=float(rope.get("low_freq_factor", 1.0)),
        high_freq_factor=float(rope.get("high_freq_factor", 4.0)),
        original_max_position_embeddings=int(rope.get("original_max_position_embeddings", 8192)))


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The GPTModel inside DDP / Float16Module wrappers."""
    while hasattr(model, "module") and not hasattr(model, "nemo_info"):
        model = model.module
    return model


def info_of(model: torch.nn.Module) -> ModelInfo:
    m = unwrap(model)
    if not hasattr(m, "nemo_info"):
        raise TypeError("model was not built by nemo_r1.models.build_model (no nemo_info attached)")
    return m.nemo_info
