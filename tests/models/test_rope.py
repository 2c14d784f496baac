"""The fused CPU RoPE equals megatron's unfused one bit for bit, values and gradients."""

import pytest
import torch
from megatron.core.models.common.embeddings import rope_utils

from nemo_r1.models import rope
from nemo_r1.platform import install_cpu_rope


@pytest.mark.parametrize("mscale", [1.0, 1.3])
def test_fused_rope_matches_megatron(mscale: float) -> None:
    install_cpu_rope()
    megatron = rope.megatron_bshd
    assert rope_utils._apply_rotary_pos_emb_bshd is rope.rope_bshd
    g = torch.Generator().manual_seed(0)
    s, b, h, d = 7, 3, 4, 64
    inv = 1.0 / (10000 ** (torch.arange(0, d, 2).float() / d))
    f = torch.outer(torch.arange(s).float(), inv)
    freqs = torch.cat([f, f], -1)[:, None, None, :]
    # a non-contiguous input, as the query/key views of the fused QKV projection are
    qkv = torch.randn(s, b, h, 3 * d, generator=g)
    t1 = qkv[..., d:2 * d].clone().requires_grad_()
    t2 = qkv[..., d:2 * d].clone().requires_grad_()
    out_ref = megatron(t1, freqs, mscale=mscale)
    out = rope.rope_bshd(t2, freqs, mscale=mscale)
    assert torch.equal(out, out_ref)  # same roundings: bit-identical
    w = torch.randn(out.shape, generator=g)
    (out_ref * w).sum().backward()
    (out * w).sum().backward()
    assert torch.equal(t2.grad, t1.grad)
    # interleaved layout is not ours: same result as megatron's, through megatron's code
    torch.testing.assert_close(rope.rope_bshd(t1.detach(), freqs, rotary_interleaved=True),
                               megatron(t1.detach(), freqs, rotary_interleaved=True))
