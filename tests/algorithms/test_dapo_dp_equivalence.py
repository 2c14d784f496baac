"""DAPO's global-token normaliser: 2 DP ranks x 2 micro-batches give the one-big-batch gradient."""

import os
import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from nemo_r1.algorithms.grpo import policy_loss

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


def _worker(rank: int, port: int, loss_type: str, q) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
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
    if rank == 0:
        q.put(w.grad.clone())
    dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_dapo_grpo_drgrpo_accumulate_to_the_full_batch_gradient():
    ctx = mp.get_context("spawn")
    for loss_type in ("dapo", "grpo", "dr_grpo"):
        q = ctx.Queue()
        port = _free_port()
        procs = [ctx.Process(target=_worker, args=(r, port, loss_type, q)) for r in range(2)]
        for p in procs:
            p.start()
        got = q.get(timeout=120)
        for p in procs:
            p.join(timeout=60)
            assert p.exitcode == 0
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
