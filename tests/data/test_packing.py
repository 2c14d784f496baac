"""Packing: BFD bins, per-document positions/mask/labels, truncation counts, seeded epoch order."""

import pytest
import torch

from nemo_r1.data.masks import block_causal_mask, segment_positions
from nemo_r1.data.packing import PackedEpochs, best_fit_decreasing, collate, fit_documents


def _doc(n: int, start: int = 1, prompt: int = 0) -> dict[str, list[int]]:
    return {"input_ids": list(range(start, start + n)), "loss_mask": [0] * prompt + [1] * (n - prompt)}


def test_best_fit_decreasing_fills_bins_exactly():
    lengths = [7, 5, 4, 3, 3, 2, 1, 1, 6]  # 32 tokens: BFD fits them into 4 bins of 8 (first-fit in order needs 5)
    bins = best_fit_decreasing(lengths, 8, seed=3)
    assert sorted(i for b in bins for i in b) == list(range(len(lengths)))
    assert [sum(lengths[i] for i in b) for b in bins] == [8, 8, 8, 8]
    assert bins[0][0] == 0  # the longest document opens the first bin
    with pytest.raises(ValueError, match="longer than the bin capacity"):
        best_fit_decreasing([9], 8)


def test_fit_documents_truncates_or_drops_and_counts():
    docs = [_doc(10), _doc(4), _doc(3, prompt=3), _doc(12, prompt=11)]
    f = fit_documents(docs, 8, "truncate")
    assert (f.truncated, f.dropped) == (2, 2)  # the 3-token prompt-only doc and the 12-token one cut to prompt
    assert [len(d["input_ids"]) for d in f.docs] == [8, 4]
    g = fit_documents(docs, 8, "drop")
    assert (g.truncated, g.dropped, len(g.docs)) == (0, 3, 1)
    with pytest.raises(ValueError, match="overlong"):
        fit_documents(docs, 8, "cut")


def test_collate_restarts_positions_blocks_attention_and_labels():
    docs = [_doc(3, 10, prompt=1), _doc(2, 20), _doc(4, 30)]
    b = collate(docs, [[0, 1], [2]], pad_id=0)
    assert b["tokens"].tolist() == [[10, 11, 12, 20, 21], [30, 31, 32, 33, 0]]
    assert b["position_ids"].tolist() == [[0, 1, 2, 0, 1], [0, 1, 2, 3, 0]]  # padding: a segment of its own
    # row 0: 10->11 trained, 11->12 trained, 12->20 crosses the boundary, 20->21 trained
    assert b["loss_mask"].tolist() == [[1, 1, 0, 1], [1, 1, 1, 0]]
    m = b["attention_mask"][0, 0]
    assert not m[4, 3] and m[4, 2] and m[3, 0] and not m[2, 0] and m[0, 1]  # own doc, causal only
    assert not b["attention_mask"][1, 0, 4, 4]  # a padding query still sees itself (no NaN row)
    single = collate(docs, [[0], [2]])
    assert "attention_mask" not in single and "position_ids" not in single  # plain causal rows


def test_masks_helpers():
    seg = torch.tensor([[0, 0, 1, 1, 1, -1]])
    assert segment_positions(seg).tolist() == [[0, 1, 0, 1, 2, 0]]
    shared = block_causal_mask(torch.tensor([[0, 0, 1, 2]]), shared=0)[0, 0]
    assert not shared[3, 0] and shared[3, 2] and not shared[2, 1]


def test_epochs_are_seeded_and_efficient():
    g = torch.Generator().manual_seed(0)
    docs = [_doc(int(n)) for n in torch.randint(2, 60, (300,), generator=g)]
    a, b = PackedEpochs(docs, 64, seed=5), PackedEpochs(docs, 64, seed=5)
    assert a.bins(0) == b.bins(0) and a.bins(1) == b.bins(1) and a.bins(0) != a.bins(1)
    assert a.bins(0) != PackedEpochs(docs, 64, seed=6).bins(0)
    bins = a.bins(0)
    assert sorted(i for x in bins for i in x) == list(range(300))
    assert a.efficiency(bins) > 0.97
    unpacked = PackedEpochs(docs, 64, seed=5, packed=False)
    assert len(unpacked) == 300 and unpacked.efficiency(unpacked.bins(0)) < 0.6
