"""Step -> data: global batches tile each seeded epoch once, DP shares tile the batch, and the
normaliser counts the whole global batch's loss tokens."""

import pytest

from nemo_r1.data.packing import PackedEpochs
from nemo_r1.trainers.sft_data import SFTData


def _docs():
    # document i: i % 7 + 3 tokens, the first two untrained (a prompt), so i % 7 + 1 loss tokens
    return [{"input_ids": [1] * (i % 7 + 3), "loss_mask": [0, 0] + [1] * (i % 7 + 1)} for i in range(40)]


def test_steps_tile_epochs_and_ranks():
    data = SFTData(PackedEpochs(_docs(), 16, seed=1), global_batch=4)
    n = data.steps_per_epoch
    assert n == len(data.epochs) // 4 >= 3
    seen = [i for s in range(n) for b in data.global_bins(s) for i in b]
    assert len(seen) == len(set(seen))  # within an epoch no document repeats
    assert data.global_bins(n) == data.epochs.bins(1)[:4] != data.global_bins(0)  # then the next epoch
    bins = data.global_bins(2)
    assert data.loss_tokens(bins) == sum(i % 7 + 1 for b in bins for i in b)
    shares = [data.micro_batches(bins, r, 2, 1) for r in range(2)]
    assert [len(s) for s in shares] == [2, 2]
    assert sum(float(mb["loss_mask"].sum()) for s in shares for mb in s) == data.loss_tokens(bins)
    with pytest.raises(ValueError, match="data-parallel"):
        data.micro_batches(bins, 0, 3, 1)
    with pytest.raises(ValueError, match="fewer than train.global_batch_size"):
        SFTData(PackedEpochs(_docs()[:3], 16, seed=1), global_batch=4)
