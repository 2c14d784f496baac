"""The sort-free top-p keeps exactly the tokens vLLM's own (sorting) implementation keeps."""

import pytest
import torch
from vllm.v1.sample.ops.topk_topp_sampler import apply_top_k_top_p_pytorch

from nemo_r1.platform import install_fast_top_p as install
from nemo_r1.platform import uninstall_fast_top_p as uninstall
from nemo_r1.rollout.top_p import top_k_top_p


def _logits(rows: int, vocab: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    # a mix of peaked (LM-like, heavy tail) and flat rows; scales 0.5..12 per row
    scale = torch.linspace(0.5, 12.0, rows).unsqueeze(1)
    x = torch.randn(rows, vocab, generator=g) * scale
    x[::7] = torch.randn(vocab, generator=g) * 0.01  # near-uniform: nucleus >> candidates
    return x


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_same_kept_set_and_values_as_vllm(seed: int) -> None:
    x = _logits(64, 49152, seed)
    p = torch.tensor([0.95, 0.5, 0.9, 0.99, 0.1, 1.0, 0.7, 0.3] * 8)
    want = apply_top_k_top_p_pytorch(x.clone(), None, p.clone(), allow_cpu_sync=True)
    got = top_k_top_p(x.clone(), None, p.clone())
    assert torch.equal(got, want)
    kept = torch.isfinite(got).sum(1)
    assert kept.min() >= 1 and kept.max() > 256  # some rows really needed the fallback


def test_with_top_k_and_few_candidates() -> None:
    x = _logits(32, 5000, 3)
    p = torch.full((32,), 0.9)
    k = torch.tensor([5, 50, 5000, 1] * 8)
    want = apply_top_k_top_p_pytorch(x.clone(), k.clone(), p.clone(), allow_cpu_sync=True)
    got = top_k_top_p(x.clone(), k.clone(), p.clone(), candidates=16)
    assert torch.equal(got, want)


def test_install_routes_vllm_cpu_sampler() -> None:
    from vllm.v1.sample.ops import topk_topp_sampler as mod

    x = _logits(8, 1000, 4)
    p = torch.full((8,), 0.8)
    want = apply_top_k_top_p_pytorch(x.clone(), None, p.clone())
    try:
        install()
        assert mod.apply_top_k_top_p.__name__ == "patched"
        assert torch.equal(mod.apply_top_k_top_p(x.clone(), None, p.clone()), want)
    finally:
        uninstall()
    assert mod.apply_top_k_top_p.__name__ == "apply_top_k_top_p"
