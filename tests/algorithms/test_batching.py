"""Rollouts -> padded training tensors: alignment of masks and logprobs to predicted tokens."""

import pytest
import torch

from nemo_r1.trainers.batching import build_batch, informative_groups, micro_batches


def test_alignment_padding_and_overlong_mask():
    b = build_batch(prompt_ids=[[5, 6], [7]], completion_ids=[[8, 9, 10], [11]],
                    rollout_logprobs=[[-0.1, -0.2, -0.3], [-0.4]], advantages=torch.tensor([1.0, -1.0]),
                    pad_id=0, completion_mask=[True, False])
    assert b.tokens.tolist() == [[5, 6, 8, 9, 10], [7, 11, 0, 0, 0]]
    # logprobs[:, t] predicts tokens[:, t+1]: completion of seq0 starts at t=1
    assert b.mask.tolist() == [[0, 1, 1, 1], [0, 0, 0, 0]]  # seq1 masked out by the overlong filter
    assert b.rollout_logprobs[0].tolist() == pytest.approx([0, -0.1, -0.2, -0.3])
    assert b.rollout_logprobs[1].tolist() == pytest.approx([-0.4, 0, 0, 0])
    assert b.lengths.tolist() == [5, 2]
    mb = b.select([1]).trim()
    assert mb.tokens.tolist() == [[7, 11]] and mb.mask.shape == (1, 1)


def test_errors_name_the_sequence():
    with pytest.raises(ValueError, match="sequence 0: 2 completion tokens but 1 rollout logprobs"):
        build_batch([[1]], [[2, 3]], [[-1.0]], torch.zeros(1), pad_id=0)
    with pytest.raises(ValueError, match="sequence 0: empty prompt"):
        build_batch([[]], [[2]], [[-1.0]], torch.zeros(1), pad_id=0)


def test_micro_batches_bucket_by_length():
    lengths = torch.tensor([3, 9, 4, 8, 1])
    assert micro_batches(lengths, 2) == [[1, 3], [2, 0], [4]]
    assert micro_batches(lengths, 2, bucket_by_length=False) == [[0, 1], [2, 3], [4]]


def test_informative_groups():
    r = torch.tensor([1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.5])
    assert informative_groups(r, 2).tolist() == [False, False, False, True]


def test_groups_with_gradient_keeps_whole_groups_with_signal():
    from nemo_r1.trainers.grpo_step import groups_with_gradient

    # 3 groups of 2: group 0 has signal, group 1 zero advantages, group 2 signal but fully masked
    b = build_batch([[1]] * 6, [[2, 3], [4], [5, 6, 7], [8], [9], [10, 11]],
                    [[-1.0, -1.0], [-1.0], [-1.0] * 3, [-1.0], [-1.0], [-1.0, -1.0]],
                    advantages=torch.tensor([0.0, 1.0, 0.0, 0.0, 1.0, -1.0]), pad_id=0,
                    completion_mask=[True, True, True, True, False, False])
    assert groups_with_gradient(b, 2) == [0, 1]  # sample 0 (advantage 0) rides along with its group
    # nothing carries signal: the shortest group is kept so the step still runs on every rank
    b.advantages = torch.zeros(6)
    b.lengths = torch.tensor([3, 2, 4, 2, 2, 1])  # group tokens 5, 6, 3
    assert groups_with_gradient(b, 2) == [4, 5]
    assert groups_with_gradient(b, 4) == list(range(6))  # not whole groups: everything trains


def test_skip_only_where_it_is_exact():
    from nemo_r1.config import load_config
    from nemo_r1.trainers.grpo_step import can_skip_zero_advantage

    assert can_skip_zero_advantage(load_config(None, ["grpo.loss_type=dapo"]))
    assert can_skip_zero_advantage(load_config(None, ["grpo.loss_type=dr_grpo"]))
    assert not can_skip_zero_advantage(load_config(None, ["grpo.loss_type=bnpo"]))  # per-micro-batch mean
    assert not can_skip_zero_advantage(load_config(None, ["grpo.beta=0.04"]))  # KL pulls on every token
    assert not can_skip_zero_advantage(load_config(None, ["grpo.skip_zero_advantage=false"]))
