"""The fused CPU SwiGLU equals megatron's unfused one bit for bit; the fused RMSNorm equals torch's
(forward and weight gradient bit for bit, input gradient to fp32 rounding). That built CPU models
use both is asserted in test_mcore_layouts."""

import pytest
import torch
import torch.nn.functional as F

from nemo_r1.models import fused


def _megatron_glu(x: torch.Tensor) -> torch.Tensor:
    """megatron's local-spec glu (transformer/mlp.py) with the default glu_linear_offset."""
    a, b = torch.chunk(x, 2, dim=-1)
    return F.silu(a) * (b + 0.0)


@pytest.mark.parametrize("shape", [(5, 3, 2 * 96), (17, 2 * 1536)])
def test_swiglu_is_bit_identical(shape: tuple[int, ...]) -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=g) * 3
    w = torch.randn(*shape[:-1], shape[-1] // 2, generator=g)
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    out_ref, out = _megatron_glu(x1), fused.swiglu(x2)
    assert torch.equal(out, out_ref)
    (out_ref * w).sum().backward()
    (out * w).sum().backward()
    assert torch.equal(x2.grad, x1.grad)


def test_swiglu_gradcheck() -> None:
    x = torch.randn(4, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(fused.swiglu, (x,))


@pytest.mark.parametrize("eps", [1e-5, None])
def test_fused_rmsnorm_matches_torch(eps: float | None) -> None:
    g = torch.Generator().manual_seed(1)
    h = 576
    ref = torch.nn.RMSNorm(h, eps=eps)
    with torch.no_grad():
        ref.weight.copy_(torch.rand(h, generator=g) + 0.5)
    ours = torch.nn.RMSNorm(h, eps=eps)
    ours.load_state_dict(ref.state_dict())
    fused.install(ours)
    assert isinstance(ours, fused.FusedRMSNorm)
    x = torch.randn(9, 4, h, generator=g) * 2
    gy = torch.randn(9, 4, h, generator=g)
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    y_ref, y = ref(x1), ours(x2)
    assert torch.equal(y, y_ref)
    (y_ref * gy).sum().backward()
    (y * gy).sum().backward()
    torch.testing.assert_close(ours.weight.grad, ref.weight.grad, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(x2.grad, x1.grad, rtol=1e-5, atol=1e-6)
    # other dtypes take torch's own path
    xb = x.to(torch.float64)
    torch.testing.assert_close(ours.double()(xb), ref.double()(xb))


def test_rmsnorm_gradcheck() -> None:
    x = torch.randn(3, 8, dtype=torch.float64, requires_grad=True)
    w = (torch.rand(8, dtype=torch.float64) + 0.5).requires_grad_()
    assert torch.autograd.gradcheck(lambda x, w: fused._RMSNorm.apply(x, w, 1e-6), (x, w))
