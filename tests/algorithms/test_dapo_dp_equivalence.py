"""DAPO's global-token normaliser: 2 DP ranks x 2 micro-batches give the one-big-batch gradient."""

import torch
import torch.distributed as dist

from nemo_r1.algorithms.grpo import policy_loss
from nemo_r1.algorithms.loss_variants import LOSS_VARIANTS
from nemo_r1.distributed import run_on_cpu_ranks

B, T, V, H = 8, 6, 11, 5


def _data():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(B, T, H, generator=g)
    tokens = torch.randint(0, V, (B, T), generator=g)
    lengths = torch.tensor([6, 1, 3, 6, 2, 5, 4, 6])  # uneven: the normaliser matters
    mask = (torch.arange(T)[None, :] < lengths[:, None]).float()
    old = torch.randn(B, T, generator=g) * 0.1 - 2.0
    adv = torch.randn(B, generator=g)
    w0 = torch.randn(V, H, generator=g) * 0.3
    return x, tokens, mask, old, adv, w0


def _logprobs(w, x, tokens):
    return torch.log_softmax(x @ w.T, dim=-1).gather(-1, tokens[..., None]).squeeze(-1)


def _full_batch_grad(loss_type: str) -> torch.Tensor:
    x, tokens, mask, old, adv, w0 = _data()
    w = w0.clone().requires_grad_(True)
    loss, _ = policy_loss(_logprobs(w, x, tokens), old, adv, mask, loss_type=loss_type, max_completion_length=T)
    loss.backward()
    return w.grad


def _worker(loss_type: str) -> torch.Tensor:
    dist.init_process_group("gloo")  # rank, world and address come from the spawner's env
    rank = dist.get_rank()
    x, tokens, mask, old, adv, w0 = _data()
    w = w0.clone().requires_grad_(True)
    n_tok = float(mask.sum())  # global: the trainer all-reduces this count before the step
    shard = slice(rank * B // 2, (rank + 1) * B // 2)
    for mb in range(2):  # two micro-batches of 2 sequences on each rank
        idx = slice(shard.start + mb * 2, shard.start + mb * 2 + 2)
        lp = _logprobs(w, x[idx], tokens[idx])
        loss, _ = policy_loss(lp, old[idx], adv[idx], mask[idx], loss_type=loss_type, num_tokens=n_tok,
                              num_sequences=B, max_completion_length=T)
        loss.backward()  # accumulates
    dist.all_reduce(w.grad, op=dist.ReduceOp.SUM)
    return w.grad.clone()


def test_dapo_grpo_drgrpo_accumulate_to_the_full_batch_gradient():
    """Every variant that claims whole-batch normalisers (the trainer skips zero-advantage groups
    for those) adds up to the full-batch gradient."""
    global_variants = [name for name, v in LOSS_VARIANTS.items() if v.global_counts]
    assert set(global_variants) >= {"dapo", "grpo", "dr_grpo"}
    for loss_type in global_variants:
        got = run_on_cpu_ranks(_worker, 2, loss_type)[0]
        want = _full_batch_grad(loss_type)
        assert torch.allclose(got, want, atol=1e-6, rtol=1e-5), (loss_type, (got - want).abs().max())


def test_local_normaliser_would_differ():
    """Guard that the test above can fail: per-micro-batch token means do not add up to the full batch."""
    x, tokens, mask, old, adv, w0 = _data()
    w = w0.clone().requires_grad_(True)
    for mb in range(4):
        idx = slice(mb * 2, mb * 2 + 2)
        loss, _ = policy_loss(_logprobs(w, x[idx], tokens[idx]), old[idx], adv[idx], mask[idx], loss_type="dapo")
        (loss / 4).backward()
    assert not torch.allclose(w.grad, _full_batch_grad("dapo"), atol=1e-4)
