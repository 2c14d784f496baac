"""Core attention for the CPU (local) layer spec: megatron's DotProductAttention, computed with
torch's fused scaled_dot_product_attention.

megatron's local DotProductAttention materialises [b*heads, s, s] scores with baddbmm, a separate
masked softmax and bmm, and repeats K/V for GQA; transformer-engine's fused kernels, which the GPU
spec uses, do not exist on CPU. torch's SDPA (flash-attention CPU kernel, native GQA) does the
same math in one op. Parameters, init and checkpoint layout are inherited unchanged.
"""

from __future__ import annotations

from typing import Any

import torch.nn.functional as F
from megatron.core import tensor_parallel
from megatron.core.transformer.dot_product_attention import DotProductAttention
from megatron.core.transformer.enums import AttnMaskType
from torch import Tensor


class SDPADotProductAttention(DotProductAttention):
    """Same interface as DotProductAttention: [s, b, heads, dim] in, [s, b, heads*dim] out."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.config.softmax_type != "vanilla" or self.config.window_size is not None:
            raise ValueError("SDPA core attention supports vanilla softmax without sliding windows only")

    def forward(self, query: Tensor, key: Tensor, value: Tensor, attention_mask: Tensor | None,
                attn_mask_type: AttnMaskType | None = None, attention_bias: Tensor | None = None,
                packed_seq_params: Any = None) -> Tensor:
        if packed_seq_params is not None or attention_bias is not None:
            raise ValueError("SDPA core attention: packed_seq_params/attention_bias are not supported; pass a "
                             "block-causal attention_mask [b, 1, s, s] (True = masked) for packed sequences")
        mask_type = attn_mask_type if attn_mask_type is not None else self.attn_mask_type
        sq, b, heads, dim = query.shape
        q, k, v = (t.permute(1, 2, 0, 3) for t in (query, key, value))  # [b, heads, s, dim]
        causal = attention_mask is None and mask_type == AttnMaskType.causal and sq > 1
        mask = None if attention_mask is None else ~attention_mask  # megatron: True = masked out
        p = self.attention_dropout.p if self.training else 0.0
        if p > 0.0:  # dropout inside a TP region draws from the model-parallel RNG, as megatron does
            with tensor_parallel.get_cuda_rng_tracker().fork():
                out = self._sdpa(q, k, v, mask, causal, p)
        else:
            out = self._sdpa(q, k, v, mask, causal, p)
        return out.permute(2, 0, 1, 3).reshape(sq, b, heads * dim)

    def _sdpa(self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, causal: bool, p: float) -> Tensor:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p, is_causal=causal,
                                              scale=self.softmax_scale, enable_gqa=k.shape[1] != q.shape[1])
