"""Rotary embedding for the CPU (local) layer spec in one pass, forward and backward.

megatron's unfused RoPE (`rope_utils._apply_rotary_pos_emb_bshd`) builds `rotate_half(t)` with a
`cat`, multiplies, adds, and `cat`s the (empty) pass-through part back on: five [s, b, heads, d]
temporaries per call, and autograd saves several of them. The fused kernels megatron uses on GPU
(transformer-engine, apex) do not exist on CPU. For the standard layout (non-interleaved halves,
cos/sin equal across the two halves, the whole head dim rotated) this computes
    out1 = x1 cos - x2 sin,   out2 = x2 cos + x1 sin
straight into the output halves (`mul(out=)`, then one half-size product added in place), and the
backward from the saved cos/sin only; the rounding is the same as megatron's, so the results are
bit-identical. Anything else (interleaved, MLA, partial rotary) goes to megatron's own function.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor


class _Rope(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, t: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
        x1, x2 = t.chunk(2, dim=-1)
        out = torch.empty(t.shape, dtype=t.dtype)
        o1, o2 = out.chunk(2, dim=-1)
        # products rounded separately, then added: bit-identical to megatron's t*cos + rot(t)*sin
        torch.mul(x1, cos, out=o1).sub_(x2 * sin)
        torch.mul(x2, cos, out=o2).add_(x1 * sin)
        ctx.save_for_backward(cos, sin)
        return out

    @staticmethod
    def backward(ctx: Any, g: Tensor) -> tuple[Tensor, None, None]:
        cos, sin = ctx.saved_tensors
        g1, g2 = g.chunk(2, dim=-1)
        gi = torch.empty(g.shape, dtype=g.dtype)
        i1, i2 = gi.chunk(2, dim=-1)
        torch.mul(g1, cos, out=i1).add_(g2 * sin)
        torch.mul(g2, cos, out=i2).sub_(g1 * sin)
        return gi, None, None


def rope_bshd(t: Tensor, freqs: Tensor, rotary_interleaved: bool = False,
              multi_latent_attention: bool = False, mscale: float = 1.0) -> Tensor:
    """Drop-in for megatron's `_apply_rotary_pos_emb_bshd` (same signature and result)."""
    d = freqs.shape[-1]
    half = d // 2
    if (rotary_interleaved or multi_latent_attention or d != t.shape[-1] or d % 2 or t.device.type != "cpu"
            or not torch.equal(freqs[..., :half], freqs[..., half:])):
        return megatron_bshd(t, freqs, rotary_interleaved, multi_latent_attention, mscale)
    f = freqs[..., :half]
    cos = (torch.cos(f) * mscale).to(t.dtype)
    sin = (torch.sin(f) * mscale).to(t.dtype)
    return _Rope.apply(t, cos, sin)


megatron_bshd: Any = None
"""megatron's own function, for the layouts `rope_bshd` leaves to it; set by
`nemo_r1.platform.install_cpu_rope`, which routes megatron through `rope_bshd`."""
