"""SFT data by step: which packed sequences a step trains on, this rank's micro-batches, and the
global loss-token count that normalises the loss.

Every rank loads the whole (tokenized) set and derives the same packed epochs from the seed, so
the global batch of step k is known everywhere without communication: its loss-token count is
exact on every rank, and a resumed run needs only k.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import Tensor

from nemo_r1.config import Config, to_dict
from nemo_r1.data.packing import Fitted, PackedEpochs, collate, fit_documents


def load_documents(cfg: Config, tokenizer: Any, which: str = "train") -> Fitted:
    """Tokenized documents of `data.train` (or `data.eval`) with loss masks, fitted to max_seq_len."""
    from nemo_r1.data.config import DataConfig
    from nemo_r1.data.formats import load_examples

    dcfg = DataConfig(**to_dict(cfg)["data"])
    examples = load_examples(dcfg, tokenizer, which=which, targets=True).examples
    return fit_documents(examples, cfg.train.max_seq_len, cfg.sft.overlong)


@dataclass
class SFTData:
    """Packed epochs cut into global batches of `global_batch` sequences (a partial last batch of
    an epoch is dropped, so every step has the same number of sequences)."""

    epochs: PackedEpochs
    global_batch: int
    pad_id: int = 0
    block_mask: bool = True

    def __post_init__(self) -> None:
        self.targets = [sum(d["loss_mask"][1:]) for d in self.epochs.docs]  # loss tokens per document
        if self.steps_per_epoch < 1:
            raise ValueError(f"the training set packs into {len(self.epochs)} sequences of train.max_seq_len="
                             f"{self.epochs.seq_len}, fewer than train.global_batch_size={self.global_batch}")

    @property
    def steps_per_epoch(self) -> int:
        return len(self.epochs) // self.global_batch

    def global_bins(self, step: int) -> list[list[int]]:
        """The packed sequences (lists of document indices) of step `step` (0-based)."""
        epoch, k = divmod(step, self.steps_per_epoch)
        return self.epochs.bins(epoch)[k * self.global_batch:(k + 1) * self.global_batch]

    def loss_tokens(self, bins: list[list[int]]) -> int:
        return sum(self.targets[i] for b in bins for i in b)

    def real_tokens(self, bins: list[list[int]]) -> int:
        return sum(self.epochs.lengths[i] for b in bins for i in b)

    def micro_batches(self, bins: list[list[int]], dp_rank: int, dp_size: int, micro: int) -> list[dict[str, Tensor]]:
        """This DP rank's contiguous share of `bins`, `micro` sequences per micro-batch."""
        if len(bins) % dp_size:
            raise ValueError(f"{len(bins)} sequences do not split over {dp_size} data-parallel ranks")
        per = len(bins) // dp_size
        mine = bins[dp_rank * per:(dp_rank + 1) * per]
        return [collate(self.epochs.docs, mine[i:i + micro], self.pad_id, self.block_mask)
                for i in range(0, len(mine), micro)]


def build_sft_data(cfg: Config, fitted: Fitted, pad_id: int) -> SFTData:
    epochs = PackedEpochs(fitted.docs, cfg.train.max_seq_len, cfg.train.seed, packed=cfg.sft.packing)
    return SFTData(epochs, cfg.train.global_batch_size, pad_id)
