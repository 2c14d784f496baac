"""Supported architectures: one entry each (HF config -> Megatron settings, plus weight rules).

Adding a Llama-like family (e.g. Mistral) is one `register(...)` call below: the HF
`architectures` names it answers to, its weight rules, and any config features it turns on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from nemo_r1.models.rules import LLAMA_RULES, QK_NORM_RULES, QKV_BIAS_RULES, Rule


@dataclass(frozen=True)
class ArchSpec:
    """How one HF model family maps onto megatron's GPTModel."""

    name: str
    hf_architectures: tuple[str, ...]
    rules: tuple[Rule, ...]
    # q, k and v projections carry biases (Qwen2); o_proj and the MLP never do.
    qkv_bias: bool = False
    # per-head RMSNorm on q and k before RoPE (Qwen3).
    qk_norm: bool = False
    # HF config keys that must be falsy for this mapping to be exact (e.g. sliding windows).
    must_be_off: tuple[str, ...] = ()


_REGISTRY: dict[str, ArchSpec] = {}


def register(spec: ArchSpec) -> ArchSpec:
    """Add an architecture; a name or HF architecture already taken is an error, not an override."""
    if spec.name in _REGISTRY:
        raise ValueError(f"architecture {spec.name!r} is already registered")
    for other in _REGISTRY.values():
        clash = set(spec.hf_architectures) & set(other.hf_architectures)
        if clash:
            raise ValueError(f"HF architectures {sorted(clash)} already map to {other.name!r}")
    _REGISTRY[spec.name] = spec
    return spec


def supported() -> list[str]:
    """HF architecture names we can convert, e.g. ['LlamaForCausalLM', ...]."""
    return sorted(a for s in _REGISTRY.values() for a in s.hf_architectures)


def get_arch(hf_config: dict[str, Any], source: str = "config.json") -> ArchSpec:
    """The entry for an HF config dict, or a clear error naming what is supported."""
    archs = hf_config.get("architectures") or []
    model_type = hf_config.get("model_type")
    for spec in _REGISTRY.values():
        if any(a in spec.hf_architectures for a in archs) or model_type == spec.name:
            for key in spec.must_be_off:
                if hf_config.get(key):
                    raise ValueError(f"{source}: {key}={hf_config[key]!r} is not supported for {spec.name} "
                                     "(megatron's GPTModel here has full causal attention only)")
            return spec
    raise ValueError(f"{source}: unsupported architecture {archs or model_type!r}; supported: "
                     f"{', '.join(supported())} (add one with nemo_r1.models.registry.register)")


register(ArchSpec("llama", ("LlamaForCausalLM",), LLAMA_RULES))
register(ArchSpec("qwen2", ("Qwen2ForCausalLM",), LLAMA_RULES + QKV_BIAS_RULES, qkv_bias=True,
                  must_be_off=("use_sliding_window",)))
register(ArchSpec("qwen3", ("Qwen3ForCausalLM",), LLAMA_RULES + QK_NORM_RULES, qk_norm=True,
                  must_be_off=("use_sliding_window",)))
