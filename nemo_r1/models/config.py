"""HF config.json -> megatron TransformerConfig + GPTModel arguments.

`ModelInfo` is the small, JSON-serialisable description every other module works from (it is
stored next to Megatron checkpoints so an export needs no HF directory).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from nemo_r1.models.registry import ArchSpec, get_arch
from nemo_r1.models.rules import Dims, check_tp

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def padded_vocab(vocab_size: int, tp: int, multiple: int = 128) -> int:
    """Vocab rows padded to a multiple of multiple*tp, so each TP rank holds an aligned slice."""
    m = multiple * tp
    return -(-vocab_size // m) * m


@dataclass(frozen=True)
class ModelInfo:
    """What we need from an HF config, normalised across families."""

    arch: str
    hf_config: dict[str, Any] = field(repr=False)
    num_layers: int
    hidden_size: int
    ffn_hidden_size: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    vocab_size: int
    padded_vocab_size: int
    tied: bool
    norm_eps: float
    rope_theta: float
    rope_scaling: dict[str, Any] | None
    max_position_embeddings: int

    @property
    def spec(self) -> ArchSpec:
        return get_arch(self.hf_config)

    @property
    def dims(self) -> Dims:
        return Dims(self.num_heads, self.num_kv_heads, self.head_dim, self.vocab_size, self.padded_vocab_size)

    def with_padded_vocab(self, padded: int) -> ModelInfo:
        from dataclasses import replace

        return replace(self, padded_vocab_size=padded)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @staticmethod
    def from_json(d: dict[str, Any]) -> ModelInfo:
        return ModelInfo(**d)


def read_hf_config(hf_dir: str | Path) -> dict[str, Any]:
    path = Path(hf_dir) / "config.json"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: --hf must be a Hugging Face model directory "
                                "(config.json + *.safetensors)")
    return json.loads(path.read_text())


def model_info(hf_config: dict[str, Any], tp: int = 1, source: str = "config.json") -> ModelInfo:
    """Normalise an HF config (dict) for the given TP size; raises naming the offending key."""
    spec = get_arch(hf_config, source)
    c = hf_config

    def need(key: str) -> Any:
        if key not in c:
            raise ValueError(f"{source}: missing key {key!r} needed for a {spec.name} model")
        return c[key]

    if c.get("hidden_act", "silu") != "silu":
        raise ValueError(f"{source}: hidden_act={c['hidden_act']!r}; only SwiGLU (silu) MLPs are supported")
    if c.get("mlp_bias"):
        raise ValueError(f"{source}: mlp_bias=true is not supported (megatron would add biases everywhere)")
    if spec.name != "qwen2" and c.get("attention_bias"):
        raise ValueError(f"{source}: attention_bias=true is not supported for {spec.name}")
    heads = need("num_attention_heads")
    hidden = need("hidden_size")
    rope = dict(c.get("rope_parameters") or c.get("rope_scaling") or {})
    theta = float(rope.pop("rope_theta", c.get("rope_theta", 10000.0)))
    rope_type = rope.get("rope_type", rope.get("type", "default"))
    if rope_type not in ("default", "llama3"):
        raise ValueError(f"{source}: rope_type={rope_type!r} is not supported (default, llama3)")
    vocab = need("vocab_size")
    info = ModelInfo(
        arch=spec.name, hf_config=c, num_layers=need("num_hidden_layers"), hidden_size=hidden,
        ffn_hidden_size=need("intermediate_size"), num_heads=heads,
        num_kv_heads=c.get("num_key_value_heads") or heads, head_dim=c.get("head_dim") or hidden // heads,
        vocab_size=vocab, padded_vocab_size=padded_vocab(vocab, tp), tied=bool(c.get("tie_word_embeddings", False)),
        norm_eps=float(c.get("rms_norm_eps", 1e-6)), rope_theta=theta,
        rope_scaling=rope if rope_type == "llama3" else None,
        max_position_embeddings=int(c.get("max_position_embeddings", 4096)))
    check_tp(info.dims, tp)
    return info


def transformer_config(info: ModelInfo, tp: int, pp: int, dtype: str = "float32", cpu: bool = True,
                       **overrides: Any):
    """megatron TransformerConfig for `info` at TP x PP (CPU: no fused kernels, CPU init)."""
    import torch.nn.functional as F
    from megatron.core.transformer.transformer_config import TransformerConfig

    if dtype not in DTYPES:
        raise ValueError(f"dtype {dtype!r} must be one of {list(DTYPES)}")
    check_tp(info.dims, tp)
    if info.num_layers % pp:
        raise ValueError(f"parallel.pipeline={pp} does not divide num_hidden_layers={info.num_layers}")
    spec = info.spec
    kw: dict[str, Any] = dict(
        num_layers=info.num_layers, hidden_size=info.hidden_size, ffn_hidden_size=info.ffn_hidden_size,
        num_attention_heads=info.num_heads, num_query_groups=info.num_kv_heads, kv_channels=info.head_dim,
        normalization="RMSNorm", layernorm_epsilon=info.norm_eps, gated_linear_unit=True,
        activation_func=F.silu, bias_activation_fusion=False, add_bias_linear=False, add_qkv_bias=spec.qkv_bias,
        qk_layernorm=spec.qk_norm, hidden_dropout=0.0, attention_dropout=0.0,
        tensor_model_parallel_size=tp, pipeline_model_parallel_size=pp, sequence_parallel=False,
        params_dtype=DTYPES[dtype], pipeline_dtype=DTYPES[dtype], bf16=dtype == "bfloat16", fp16=dtype == "float16",
        # Loss functions here are already normalised by global counts: sum over micro-batches and DP.
        calculate_per_token_loss=True,
        # Micro-batches of different lengths cross pipeline stages with their shapes sent first.
        variable_seq_lengths=pp > 1,
        moe_token_dispatcher_type="alltoall",  # only to pass a config check tied to variable_seq_lengths
        use_cpu_initialization=cpu, gradient_accumulation_fusion=False, masked_softmax_fusion=not cpu,
        apply_rope_fusion=False, persist_layer_norm=not cpu,
    )
    kw.update(overrides)
    return TransformerConfig(**kw)


def sequence_parallel_overrides(enabled: bool, tp: int, cuda: bool) -> dict[str, Any]:
    """TransformerConfig fields for `parallel.sequence_parallel`: activations outside the TP regions
    (norms, dropout) split along the sequence over the TP ranks. GPU only: the CPU path (local layer
    spec, gloo) is not built or tested for its reduce-scatter/all-gather pattern, so it is refused."""
    if not enabled or tp == 1:
        return {}
    if not cuda:
        raise ValueError("parallel.sequence_parallel=true runs on GPUs only (it splits activations over "
                         "the TP ranks with NCCL reduce-scatter/all-gather); set parallel.sequence_parallel=false "
                         "on CPU")
    return {"sequence_parallel": True}


def recompute_overrides(mode: str) -> dict[str, Any]:
    """TransformerConfig fields for the config's `model.recompute` (none | selective | full).

    full: every layer's forward is recomputed in backward (only each layer's input is kept);
    selective: megatron recomputes core attention only (the softmax(QK^T)V part)."""
    if mode == "none":
        return {}
    if mode == "selective":
        return {"recompute_granularity": "selective"}
    if mode == "full":
        return {"recompute_granularity": "full", "recompute_method": "uniform", "recompute_num_layers": 1}
    raise ValueError(f"model.recompute={mode!r} is not one of ['none', 'selective', 'full']")
