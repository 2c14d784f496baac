"""nll_loss with a global token count: any split of one global batch gives the same gradient."""

import pytest
import torch

from nemo_r1.algorithms.sft import nll_loss

B, T, V, H = 8, 7, 13, 5


def _data():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(B, T, H, generator=g)
    tokens = torch.randint(0, V, (B, T), generator=g)
    lengths = torch.tensor([7, 1, 3, 7, 2, 6, 4, 7])  # uneven: a per-micro-batch mean would differ
    mask = (torch.arange(T)[None, :] < lengths[:, None]).float()
    w0 = torch.randn(V, H, generator=g) * 0.3
    return x, tokens, mask, w0


def _logprobs(w, x, tokens):
    return torch.log_softmax(x @ w.T, dim=-1).gather(-1, tokens[..., None]).squeeze(-1)


def _grad(micro: int, dp: int, per_micro_mean: bool = False) -> torch.Tensor:
    """Gradient of one step: `dp` simulated ranks, each accumulating its micro-batches, grads summed."""
    x, tokens, mask, w0 = _data()
    total = float(mask.sum())
    grads = []
    for shard in torch.arange(B).chunk(dp):
        w = w0.clone().requires_grad_(True)
        for mb in shard.split(micro):
            # the mean of micro-batch means: each micro-batch divided by its own tokens x micro-batches
            n = float(mask[mb].sum()) * (len(shard) // micro) if per_micro_mean else total
            nll_loss(_logprobs(w, x[mb], tokens[mb]), mask[mb], n).backward()
        grads.append(w.grad)
    return torch.stack(grads).sum(0)


def test_global_normaliser_is_split_invariant():
    x, tokens, mask, w0 = _data()
    w = w0.clone().requires_grad_(True)
    lp = _logprobs(w, x, tokens)
    loss = nll_loss(lp, mask, float(mask.sum()))
    assert loss.item() == pytest.approx(float(-(lp.detach() * mask).sum() / mask.sum()), rel=1e-6)
    loss.backward()
    ref = w.grad
    for micro, dp in ((1, 1), (4, 1), (2, 2)):  # (micro-batch 1, accumulation 8), (4, 2), (2, 2, DP2)
        torch.testing.assert_close(_grad(micro, dp), ref, rtol=1e-6, atol=1e-7)
    # a per-micro-batch mean is not split invariant on this batch: the comparison above can fail
    assert not torch.allclose(_grad(1, 1, per_micro_mean=True), ref, rtol=1e-3, atol=1e-5)


def test_nll_loss_rejects_bad_inputs():
    with pytest.raises(ValueError, match="num_tokens"):
        nll_loss(torch.zeros(2, 3), torch.ones(2, 3), 0)
    with pytest.raises(ValueError, match="shape"):
        nll_loss(torch.zeros(2, 3), torch.ones(2, 4), 1)
