"""`use_fused_cpu_adam`: torch's fused CPU Adam gives the update of the per-op loop megatron falls
back to without TE/apex, and stays on after a checkpoint's param groups are loaded back.
(That the real megatron optimizer is fused after setup and resume: test_mcore_layouts.)"""

from __future__ import annotations

import torch

from nemo_r1.models.train import use_fused_cpu_adam


def _params(seed: int) -> list[torch.nn.Parameter]:
    g = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(s, generator=g)) for s in [(64, 32), (32,), (7, 5, 3)]]


def _run(fused: bool, steps: int = 5) -> tuple[list[torch.Tensor], torch.optim.AdamW]:
    ps = _params(0)
    opt = torch.optim.AdamW([{"params": ps[:2], "weight_decay": 0.1}, {"params": ps[2:], "weight_decay": 0.0}],
                            lr=1e-2, betas=(0.9, 0.95), eps=1e-6)
    if fused:
        use_fused_cpu_adam(opt)
    g = torch.Generator().manual_seed(1)
    for _ in range(steps):
        for p in ps:
            p.grad = torch.randn(p.shape, generator=g)
        opt.step()
    return [p.detach().clone() for p in ps], opt


def test_fused_cpu_adam_matches_the_per_op_loop() -> None:
    ref, ref_opt = _run(fused=False)
    got, opt = _run(fused=True)
    assert all(gr["fused"] is True and gr["foreach"] is False for gr in opt.param_groups)
    assert all(gr["fused"] is None for gr in ref_opt.param_groups)
    assert (ref[0] - _params(0)[0]).abs().max() > 1e-2  # five steps of lr 1e-2 moved the weights
    for a, b in zip(ref, got, strict=True):
        torch.testing.assert_close(b, a, rtol=1e-6, atol=1e-6)
    for p_ref, p in zip(ref_opt.param_groups[0]["params"], opt.param_groups[0]["params"], strict=True):
        torch.testing.assert_close(opt.state[p]["exp_avg_sq"], ref_opt.state[p_ref]["exp_avg_sq"])


def test_loading_an_unfused_state_keeps_fused_after_reapplying() -> None:
    _, ref_opt = _run(fused=False, steps=2)  # e.g. a checkpoint written before fused was on
    _, opt = _run(fused=True, steps=0)
    opt.load_state_dict(ref_opt.state_dict())
    assert all(gr["fused"] is None for gr in opt.param_groups)  # torch restores the saved flags
    use_fused_cpu_adam(opt)
    assert all(gr["fused"] is True for gr in opt.param_groups)
    opt.step()  # the loaded (non-fused) step counters work with the fused kernel

