"""Declarative HF <-> Megatron weight-name rules and the tensor-parallel split/merge of each kind.

A `Rule` names one Megatron parameter, the HF tensor(s) it is made of, and a `kind` that says
how it is laid out across tensor-parallel ranks:

- replicated: the same on every TP rank (norms).
- column: split along dim 0 (output features).  row: split along dim 1 (input features).
- vocab: column-parallel after padding dim 0 to the padded vocabulary (zeros), truncated on export.
- qkv: HF q, k, v fused per query group: [q_group(q_per_group*hd), k(hd), v(hd)] for each KV head,
  groups split across TP ranks (so num_kv_heads % tp == 0).
- gate_up: HF gate and up fused per TP rank: rank r holds [gate_r; up_r].

`shard` builds one rank's slice reading only the rows/columns it needs through a `Reader` (a
safetensors file opened lazily), so import never materialises the full model on every rank.
`merge` inverts it from all TP ranks' shards. Both are pure tensor code, independent of
torch.distributed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

KINDS = ("replicated", "column", "row", "vocab", "qkv", "gate_up")


@dataclass(frozen=True)
class Rule:
    """One Megatron parameter <- one or more HF tensors. `{i}` is the (global) layer index."""

    mcore: str
    hf: tuple[str, ...]
    kind: str
    # "layer" rules repeat per transformer layer; "first"/"last" live on the first/last PP stage.
    where: str = "layer"

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"rule {self.mcore}: kind {self.kind!r} is not one of {KINDS}")
        n = {"qkv": 3, "gate_up": 2}.get(self.kind, 1)
        if len(self.hf) != n:
            raise ValueError(f"rule {self.mcore}: kind {self.kind} takes {n} HF tensors, got {self.hf}")


@dataclass(frozen=True)
class Dims:
    """The sizes the qkv and vocab rules need."""

    num_heads: int
    num_kv_heads: int
    head_dim: int
    vocab_size: int
    padded_vocab_size: int


class Reader:
    """Row/column slices of named tensors; `get(name)` returns a safetensors-style slice object."""

    def __init__(self, get: Callable[[str], object]) -> None:
        self._get = get

    def full(self, name: str) -> Tensor:
        return self._get(name)[:]

    def rows(self, name: str, start: int, stop: int) -> Tensor:
        return self._get(name)[start:stop]

    def cols(self, name: str, start: int, stop: int) -> Tensor:
        return self._get(name)[:, start:stop]

    def shape(self, name: str) -> list[int]:
        return list(self._get(name).get_shape())


def _chunk(n: int, tp: int, r: int, what: str) -> tuple[int, int]:
    if n % tp:
        raise ValueError(f"{what} = {n} is not divisible by tensor parallel size {tp}")
    k = n // tp
    return r * k, (r + 1) * k


def check_tp(dims: Dims, tp: int) -> None:
    """Refuse layouts megatron cannot shard, naming the sizes (before any rank builds a model)."""
    if dims.num_kv_heads % tp:
        ok = [t for t in range(1, dims.num_kv_heads + 1) if dims.num_kv_heads % t == 0 and dims.num_heads % t == 0]
        raise ValueError(f"parallel.tensor={tp} does not divide num_key_value_heads={dims.num_kv_heads} "
                         f"(query groups are split across TP ranks); valid tensor-parallel sizes for this "
                         f"model: {ok}")
    if dims.num_heads % tp:
        raise ValueError(f"parallel.tensor={tp} does not divide num_attention_heads={dims.num_heads}")


def shard(rule: Rule, names: Sequence[str], reader: Reader, dims: Dims, tp: int, r: int) -> Tensor:
    """Rank r's slice of the Megatron parameter built from HF tensors `names`."""
    kind = rule.kind
    if kind == "replicated":
        return reader.full(names[0])
    if kind == "column":
        n = reader.shape(names[0])[0]
        return reader.rows(names[0], *_chunk(n, tp, r, f"{names[0]} rows"))
    if kind == "row":
        n = reader.shape(names[0])[1]
        return reader.cols(names[0], *_chunk(n, tp, r, f"{names[0]} columns"))
    if kind == "vocab":
        return _vocab_shard(names[0], reader, dims, tp, r)
    if kind == "gate_up":
        n = reader.shape(names[0])[0]
        a, b = _chunk(n, tp, r, f"{names[0]} rows")
        return torch.cat([reader.rows(names[0], a, b), reader.rows(names[1], a, b)], dim=0)
    return _qkv_shard(names, reader, dims, tp, r)


def _vocab_shard(name: str, reader: Reader, dims: Dims, tp: int, r: int) -> Tensor:
    shape = reader.shape(name)
    if shape[0] != dims.vocab_size:
        raise ValueError(f"{name} has {shape[0]} rows but config.json says vocab_size={dims.vocab_size}")
    a, b = _chunk(dims.padded_vocab_size, tp, r, "padded vocab size")
    real = reader.rows(name, min(a, dims.vocab_size), min(b, dims.vocab_size))
    if real.shape[0] == b - a:
        return real
    pad = torch.zeros((b - a - real.shape[0], *shape[1:]), dtype=real.dtype)
    return torch.cat([real, pad], dim=0)


def _qkv_shard(names: Sequence[str], reader: Reader, dims: Dims, tp: int, r: int) -> Tensor:
    g, hd = dims.num_kv_heads, dims.head_dim
    qpg = dims.num_heads // g
    g0, g1 = _chunk(g, tp, r, "num_key_value_heads")
    q = reader.rows(names[0], g0 * qpg * hd, g1 * qpg * hd)
    k = reader.rows(names[1], g0 * hd, g1 * hd)
    v = reader.rows(names[2], g0 * hd, g1 * hd)
    rest = q.shape[1:]
    n = g1 - g0
    fused = torch.cat([q.reshape(n, qpg * hd, *rest), k.reshape(n, hd, *rest), v.reshape(n, hd, *rest)], dim=1)
    return fused.reshape(n * (qpg + 2) * hd, *rest)


def merge(rule: Rule, shards: Sequence[Tensor], dims: Dims) -> list[Tensor]:
    """The full HF tensors (in `rule.hf` order) from every TP rank's shard, in TP-rank order."""
    kind = rule.kind
    if kind == "replicated":
        return [shards[0].clone()]  # never hand out the live parameter
    if kind == "column":
        return [torch.cat(list(shards), dim=0)]
    if kind == "row":
        return [torch.cat(list(shards), dim=1)]
    if kind == "vocab":
        return [torch.cat(list(shards), dim=0)[: dims.vocab_size]]
    if kind == "gate_up":
        halves = [s.chunk(2, dim=0) for s in shards]
        return [torch.cat([h[0] for h in halves], dim=0), torch.cat([h[1] for h in halves], dim=0)]
    full = torch.cat(list(shards), dim=0)
    g, hd = dims.num_kv_heads, dims.head_dim
    qpg = dims.num_heads // g
    rest = full.shape[1:]
    grouped = full.reshape(g, (qpg + 2) * hd, *rest)
    q, k, v = grouped.split([qpg * hd, hd, hd], dim=1)
    return [q.reshape(g * qpg * hd, *rest), k.reshape(g * hd, *rest), v.reshape(g * hd, *rest)]


def expand(rule: Rule, layer: int | None) -> tuple[str, tuple[str, ...]]:
    """(Megatron name, HF names) with `{i}` filled in: Megatron uses the stage-local layer index in
    module names, HF the global one; callers pass both through this one function."""
    if rule.where != "layer":
        return rule.mcore, rule.hf
    assert layer is not None
    return rule.mcore, tuple(h.format(i=layer) for h in rule.hf)


# ---------------------------------------------------------------------------------------------
# Rule sets shared by the Llama-like families (Llama, Mistral, Qwen2, Qwen3).

L = "model.layers.{i}."
M = "decoder.layers.{i}."

LLAMA_RULES: tuple[Rule, ...] = (
    Rule("embedding.word_embeddings.weight", ("model.embed_tokens.weight",), "vocab", "first"),
    Rule(M + "input_layernorm.weight", (L + "input_layernorm.weight",), "replicated"),
    Rule(M + "self_attention.linear_qkv.weight",
         (L + "self_attn.q_proj.weight", L + "self_attn.k_proj.weight", L + "self_attn.v_proj.weight"), "qkv"),
    Rule(M + "self_attention.linear_proj.weight", (L + "self_attn.o_proj.weight",), "row"),
    Rule(M + "pre_mlp_layernorm.weight", (L + "post_attention_layernorm.weight",), "replicated"),
    Rule(M + "mlp.linear_fc1.weight", (L + "mlp.gate_proj.weight", L + "mlp.up_proj.weight"), "gate_up"),
    Rule(M + "mlp.linear_fc2.weight", (L + "mlp.down_proj.weight",), "row"),
    Rule("decoder.final_layernorm.weight", ("model.norm.weight",), "replicated", "last"),
    Rule("output_layer.weight", ("lm_head.weight",), "vocab", "last"),
)

QKV_BIAS_RULES: tuple[Rule, ...] = (
    Rule(M + "self_attention.linear_qkv.bias",
         (L + "self_attn.q_proj.bias", L + "self_attn.k_proj.bias", L + "self_attn.v_proj.bias"), "qkv"),
)

QK_NORM_RULES: tuple[Rule, ...] = (
    Rule(M + "self_attention.q_layernorm.weight", (L + "self_attn.q_norm.weight",), "replicated"),
    Rule(M + "self_attention.k_layernorm.weight", (L + "self_attn.k_norm.weight",), "replicated"),
)

# The transformer-engine spec fuses the pre-attention/pre-MLP norms into the following linear.
TE_ALIASES: dict[str, str] = {
    "input_layernorm.weight": "self_attention.linear_qkv.layer_norm_weight",
    "pre_mlp_layernorm.weight": "mlp.linear_fc1.layer_norm_weight",
}
