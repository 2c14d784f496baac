"""SFT packing: whole-epoch best-fit-decreasing bins, per-document attention, exact labels.

Why whole-epoch BFD: binning within small windows (TRL packs 1000 rows at a time) leaves the long
tail of each window half empty; BFD over the epoch fills sequences to within a few percent. Each
packed row keeps its documents apart exactly: positions restart at 0 per document, attention is
block-diagonal causal (`data.masks`), and a document's last token predicts nothing (no label
crosses a boundary), so a packed row gives each document the logits it would get alone.

The epoch's bins and their order depend only on (seed, epoch): a step number is a data position,
so resuming needs no iterator state.
"""

from __future__ import annotations

import bisect
import random
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from nemo_r1.data.masks import PAD_SEGMENT, block_causal_mask, segment_positions

OVERLONG = ("truncate", "drop")


@dataclass
class Fitted:
    """Documents that fit one sequence, and what happened to the others."""

    docs: list[dict[str, list[int]]]
    truncated: int = 0
    dropped: int = 0


def fit_documents(docs: list[dict[str, Any]], max_len: int, overlong: str = "truncate") -> Fitted:
    """Cut (or drop) documents longer than `max_len`; drop those with no loss token left to predict.

    docs: {"input_ids", "loss_mask"} per document (loss_mask[i] = 1: token i is trained).
    """
    if overlong not in OVERLONG:
        raise ValueError(f"overlong={overlong!r} is not one of {list(OVERLONG)}")
    out, truncated, dropped = [], 0, 0
    for d in docs:
        ids, mask = list(d["input_ids"]), list(d["loss_mask"])
        if len(ids) > max_len:
            if overlong == "drop":
                dropped += 1
                continue
            ids, mask, truncated = ids[:max_len], mask[:max_len], truncated + 1
        if not any(mask[1:]):  # the first token is never predicted
            dropped += 1
            continue
        out.append({"input_ids": ids, "loss_mask": mask})
    return Fitted(out, truncated, dropped)


def best_fit_decreasing(lengths: list[int], capacity: int, seed: int = 0) -> list[list[int]]:
    """Bins (lists of document indices, each summing to <= capacity) by best-fit-decreasing.

    Documents of equal length are taken in a seeded random order, so epochs differ in which
    documents share a row; each bin lists its documents longest first.
    """
    if any(n > capacity for n in lengths):
        raise ValueError(f"a document is longer than the bin capacity {capacity}; fit_documents first")
    order = list(range(len(lengths)))
    random.Random(seed).shuffle(order)
    order.sort(key=lambda i: -lengths[i])
    bins: list[list[int]] = []
    free: list[tuple[int, int]] = []  # (space left, bin id), sorted
    for i in order:
        n = lengths[i]
        j = bisect.bisect_left(free, (n, -1))
        if j == len(free):
            bins.append([i])
            bisect.insort(free, (capacity - n, len(bins) - 1))
            continue
        left, b = free.pop(j)
        bins[b].append(i)
        bisect.insort(free, (left - n, b))
    return bins


class PackedEpochs:
    """The packed sequences of every epoch, addressable by (epoch, index): packing is rerun per
    epoch with its own seed and the bins are shuffled, so the step alone fixes the data position."""

    def __init__(self, docs: list[dict[str, list[int]]], seq_len: int, seed: int, packed: bool = True) -> None:
        if not docs:
            raise ValueError("no training documents left to pack")
        self.docs, self.seq_len, self.seed, self.packed = docs, seq_len, seed, packed
        self.lengths = [len(d["input_ids"]) for d in docs]
        self._cache: tuple[int, list[list[int]]] | None = None

    def bins(self, epoch: int) -> list[list[int]]:
        if self._cache is None or self._cache[0] != epoch:
            rng = random.Random(f"{self.seed}:{epoch}:pack")  # str seeds hash the same in every process
            if self.packed:
                bins = best_fit_decreasing(self.lengths, self.seq_len, rng.randrange(1 << 31))
            else:
                bins = [[i] for i in range(len(self.docs))]
            rng.shuffle(bins)
            self._cache = (epoch, bins)
        return self._cache[1]

    def __len__(self) -> int:
        """Sequences per epoch (the same for every epoch up to BFD ties; epoch 0's count)."""
        return len(self.bins(0))

    def efficiency(self, bins: list[list[int]]) -> float:
        """Real tokens / slots of `bins` as sequences of seq_len (unpacked rows: padded to seq_len)."""
        return sum(self.lengths[i] for b in bins for i in b) / max(len(bins) * self.seq_len, 1)


def collate(docs: list[dict[str, list[int]]], bins: list[list[int]], pad_id: int = 0,
            block_mask: bool = True) -> dict[str, Tensor]:
    """One micro-batch from bins of documents: `tokens` [R, L], `position_ids`, `attention_mask`
    [R, 1, L, L] (True = masked) and `loss_mask` [R, L-1] over next-token predictions.

    L is the longest row, not seq_len. Rows of one document get no mask/positions (plain causal
    attention is the same and takes the fast path). `block_mask=False` lets attention cross
    document boundaries (only for tests that show the block mask matters).
    """
    rows = [[t for i in b for t in docs[i]["input_ids"]] for b in bins]
    L = max(len(r) for r in rows)
    R = len(rows)
    tokens = torch.full((R, L), pad_id, dtype=torch.long)
    segments = torch.full((R, L), PAD_SEGMENT, dtype=torch.long)
    trained = torch.zeros(R, L, dtype=torch.bool)
    for r, b in enumerate(bins):
        at = 0
        for s, i in enumerate(b):
            ids, mask = docs[i]["input_ids"], docs[i]["loss_mask"]
            tokens[r, at:at + len(ids)] = torch.tensor(ids)
            segments[r, at:at + len(ids)] = s
            trained[r, at:at + len(ids)] = torch.tensor(mask, dtype=torch.bool)
            at += len(ids)
    # position t predicts token t+1: only inside one document, and only a trained token
    same_doc = (segments[:, 1:] == segments[:, :-1]) & (segments[:, 1:] != PAD_SEGMENT)
    out = {"tokens": tokens, "loss_mask": (same_doc & trained[:, 1:]).float()}
    if any(len(b) > 1 for b in bins):
        out["position_ids"] = segment_positions(segments) if block_mask else torch.arange(L).expand(R, L)
        out["attention_mask"] = block_causal_mask(segments if block_mask else (segments != PAD_SEGMENT).long())
    return out
