"""GRPO advantages and losses against values worked out by hand."""

import math

import pytest
import torch

from nemo_r1.algorithms.grpo import compute_advantages, policy_loss
from nemo_r1.algorithms.loss_variants import LOSS_VARIANTS


def test_group_advantages_hand_values():
    r = torch.tensor([1.0, 0.0, 0.0, 1.0, 2.0, 2.0, 2.0, 2.0])
    a = compute_advantages(r, group_size=4, eps=0.0 + 1e-4)
    # group 1: mean 0.5, unbiased std sqrt(1/3) = 0.57735
    s = math.sqrt(1 / 3)
    assert a[:4].tolist() == pytest.approx([0.5 / (s + 1e-4), -0.5 / (s + 1e-4), -0.5 / (s + 1e-4), 0.5 / (s + 1e-4)])
    assert a[4:].tolist() == [0.0, 0.0, 0.0, 0.0]  # equal rewards: no signal, not NaN


def test_leave_one_out_and_scales():
    r = torch.tensor([3.0, 0.0, 0.0, 1.0, 1.0, 1.0])
    loo = compute_advantages(r, 3, scale="none", leave_one_out=True)
    assert loo.tolist() == pytest.approx([3.0, -1.5, -1.5, 0.0, 0.0, 0.0])
    none = compute_advantages(r, 3, scale="none")
    assert none.tolist() == pytest.approx([2.0, -1.0, -1.0, 0.0, 0.0, 0.0])
    batch_std = torch.tensor([3.0, 0, 0, 1, 1, 1]).std().item()  # unbiased, = 1.1690
    batch = compute_advantages(r, 3, scale="batch", eps=1e-4)
    assert batch.tolist() == pytest.approx([2 / (batch_std + 1e-4), -1 / (batch_std + 1e-4), -1 / (batch_std + 1e-4), 0, 0, 0])
    group = compute_advantages(r, 3, scale="group", eps=1e-4)
    assert group[0].item() == pytest.approx(2 / (math.sqrt(3.0) + 1e-4))  # std of [3,0,0] = sqrt(3)


def test_advantage_input_errors():
    with pytest.raises(ValueError, match="multiple of group_size"):
        compute_advantages(torch.zeros(5), 2)
    with pytest.raises(ValueError, match="scale"):
        compute_advantages(torch.zeros(4), 2, scale="global")


def _batch():
    # 2 sequences, 3 tokens; second sequence has 2 real tokens
    logp = torch.log(torch.tensor([[0.5, 0.5, 0.5], [0.2, 0.9, 0.3]]))
    old = torch.log(torch.tensor([[0.5, 0.25, 0.8], [0.4, 0.5, 0.3]]))
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
    adv = torch.tensor([1.0, -2.0])
    return logp, old, adv, mask


# ratios: seq0 [1.0, 2.0, 0.625], seq1 [0.5, 1.8, (1.0 masked)]
# per-token loss, eps_low=0.2 eps_high=0.28:
#  seq0 (A=+1): max(-r, -clip(r)) -> r=1: -1; r=2: max(-2, -1.28) = -1.28; r=.625: max(-.625, -.8) = -.625
#  seq1 (A=-2): max(2r, 2clip(r)) -> r=.5: max(1.0, 1.6) = 1.6; r=1.8: max(3.6, 2.56) = 3.6
SEQ0 = [-1.0, -1.28, -0.625]
SEQ1 = [1.6, 3.6]


HAND_VALUES = {
    "dapo": (sum(SEQ0) + sum(SEQ1)) / 5,
    "bnpo": (sum(SEQ0) + sum(SEQ1)) / 5,
    "grpo": (sum(SEQ0) / 3 + sum(SEQ1) / 2) / 2,
    "dr_grpo": (sum(SEQ0) + sum(SEQ1)) / (2 * 4),
}


def test_every_loss_variant_has_a_hand_value():
    assert set(HAND_VALUES) == set(LOSS_VARIANTS)


def test_unknown_loss_type_names_the_variants():
    logp, old, adv, mask = _batch()
    with pytest.raises(ValueError, match=r"loss_type='gspo' is not one of \('grpo', 'bnpo', 'dr_grpo', 'dapo'\)"):
        policy_loss(logp, old, adv, mask, loss_type="gspo")


@pytest.mark.parametrize("loss_type,expected", list(HAND_VALUES.items()))
def test_loss_types_hand_values(loss_type, expected):
    logp, old, adv, mask = _batch()
    loss, m = policy_loss(logp, old, adv, mask, loss_type=loss_type, max_completion_length=4)
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    # clipped: seq0 tok1 (r=2 > 1.28, A>0) high; seq1 tok0 (r=.5 < .8, A<0) low; 5 real tokens
    assert m["clip_frac_high"] == pytest.approx(1 / 5) and m["clip_frac_low"] == pytest.approx(1 / 5)
    assert m["clip_frac"] == pytest.approx(2 / 5)
    assert m["ratio_max"] == pytest.approx(2.0) and m["ratio_min"] == pytest.approx(0.5)


def test_dual_clip_bounds_negative_advantages():
    logp, old, adv, mask = _batch()
    loss, _ = policy_loss(logp, old, adv, mask, loss_type="dapo", dual_clip=1.5)
    # seq1 tok1: 3.6 capped at -A*c = 3.0; others unchanged (1.6 < 3.0)
    assert loss.item() == pytest.approx((sum(SEQ0) + 1.6 + 3.0) / 5, rel=1e-6)


def test_kl_penalty_and_tis_weight():
    logp, old, adv, mask = _batch()
    ref = old.clone()
    loss, m = policy_loss(logp, old, adv, mask, loss_type="dapo", beta=0.1, ref_logprobs=ref)
    d = (ref - logp)
    k3 = (torch.exp(d) - d - 1)
    per = torch.tensor([SEQ0, SEQ1 + [0.0]]) + 0.1 * k3
    assert loss.item() == pytest.approx(float((per * mask).sum() / 5), rel=1e-6)
    assert m["kl"] == pytest.approx(float((k3 * mask).sum() / 5), rel=1e-6)
    # truncated importance sampling: weight min(exp(old - rollout), cap) on each token
    rollout = old - torch.log(torch.tensor([[2.0, 0.5, 1.0], [1.0, 4.0, 1.0]]))  # exp(old-rollout) = these
    loss_t, m_t = policy_loss(logp, old, adv, mask, loss_type="dapo", rollout_logprobs=rollout, tis_cap=2.5)
    w = torch.tensor([[2.0, 0.5, 1.0], [1.0, 2.5, 1.0]])
    assert loss_t.item() == pytest.approx(float((torch.tensor([SEQ0, SEQ1 + [0.0]]) * w * mask).sum() / 5), rel=1e-6)
    assert m_t["tis_weight_mean"] == pytest.approx(float((w * mask).sum() / 5))


def test_beta_zero_needs_no_reference_and_beta_positive_does():
    logp, old, adv, mask = _batch()
    loss, m = policy_loss(logp, old, adv, mask, beta=0.0)  # no ref_logprobs: fine
    assert m["kl"] == 0.0
    with pytest.raises(ValueError, match="ref_logprobs"):
        policy_loss(logp, old, adv, mask, beta=0.04)


def test_gradient_is_advantage_times_ratio_derivative():
    logp, old, adv, mask = _batch()
    logp = logp.clone().requires_grad_(True)
    loss, _ = policy_loss(logp, old, adv, mask, loss_type="dapo")
    loss.backward()
    # d/dlogp of -A*r is -A*r where unclipped; zero where the clipped branch is active or masked
    expected = torch.tensor([[-1.0 * 1.0, 0.0, -1.0 * 0.625], [0.0, 2.0 * 1.8, 0.0]]) / 5
    assert torch.allclose(logp.grad, expected, atol=1e-6)


def test_unscorable_samples_stay_out_of_the_group_statistics():
    r = torch.tensor([1.0, 0.0, 0.5, 0.0])  # sample 2 is unscorable: its 0.5 is a placeholder
    valid = torch.tensor([True, True, False, True])
    a = compute_advantages(r, 4, valid=valid, eps=0.0)
    scored = torch.tensor([1.0, 0.0, 0.0])
    m, s = scored.mean(), scored.std()
    assert torch.allclose(a, torch.tensor([(1 - m) / s, -m / s, 0.0, -m / s]))
    # filling the None with the group mean (the old way) shrinks the std and inflates the others
    filled = r.clone()
    filled[2] = m
    assert compute_advantages(filled, 4, eps=0.0)[0] > a[0] * 1.2
    # leave-one-out baselines over the other *scorable* members; all-valid equals no mask
    loo = compute_advantages(r, 4, scale="none", leave_one_out=True, valid=valid)
    assert torch.allclose(loo, torch.tensor([1.0, -0.5, 0.0, -0.5]))
    assert torch.equal(compute_advantages(r, 2, valid=torch.ones(4, dtype=torch.bool)), compute_advantages(r, 2))
    # a group with one scorable member has no spread: advantage 0, not NaN
    one = compute_advantages(torch.tensor([3.0, 0.0]), 2, valid=torch.tensor([True, False]))
    assert torch.equal(one, torch.zeros(2))


def test_bnpo_averages_micro_batch_means_and_differs_from_dapo():
    """Two micro-batches with 3 and 1 loss tokens: bnpo = mean of the two token means (TRL: token
    mean per local batch, averaged over accumulation steps and ranks); dapo = the global token mean.
    Summing bnpo's per-micro-batch losses gives the average, whatever the micro-batch count."""
    logp, old, adv, mask = _batch()
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]])
    parts = {}
    for lt in ("bnpo", "dapo"):
        parts[lt] = sum(policy_loss(logp[i:i + 1], old[i:i + 1], adv[i:i + 1], mask[i:i + 1], loss_type=lt,
                                    num_tokens=4.0, num_micro_batches=2.0)[0].item() for i in range(2))
    assert parts["bnpo"] == pytest.approx((sum(SEQ0) / 3 + SEQ1[0] / 1) / 2, rel=1e-6)
    assert parts["dapo"] == pytest.approx((sum(SEQ0) + SEQ1[0]) / 4, rel=1e-6)
    assert parts["bnpo"] != pytest.approx(parts["dapo"], rel=1e-3)
    # one micro-batch holding both: its own token mean, not twice it
    whole, _ = policy_loss(logp, old, adv, mask, loss_type="bnpo", num_micro_batches=1.0)
    assert whole.item() == pytest.approx((sum(SEQ0) + SEQ1[0]) / 4, rel=1e-6)
