"""Engines inside the training processes: who holds one, and how a replica shares its results.

vLLM builds its process groups from the *existing* torch.distributed world when one exists, and
group creation is a collective over that whole world. So every training rank first calls
`init_engine_parallel_state` together; after that an engine can be created on some ranks only.

- CPU: one TP=1 engine per data-parallel replica, on the replica's first rank (the leader). The
  other ranks of the replica help gather weights during a refit and receive the rollouts.
- GPU: every rank holds its TP shard of an engine whose TP group is the training TP group
  (`external_launcher`; vLLM's start-up all-reduces over the whole world, so all ranks build
  one). A replica with pipeline stages therefore has one engine per stage; they split its prompts.

`ColocatedRollout.generate` and `.refit` are collectives over the replica group: every rank of it
calls them with the same arguments.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.distributed as dist
from torch import Tensor

from nemo_r1.rollout.base import EngineConfig, Rollout, SamplingConfig
from nemo_r1.rollout.refit import RefitStats, Timer

if TYPE_CHECKING:
    from nemo_r1.rollout.hf_engine import HFGenerator
    from nemo_r1.rollout.vllm_engine import VLLMEngine


def init_engine_parallel_state(engine_tp: int) -> None:
    """Collective over the whole world: lay vLLM's TP groups over consecutive ranks (Megatron's TP
    groups with its default rank order), pipeline 1, no vLLM data parallelism. Idempotent."""
    from vllm.config import VllmConfig, set_current_vllm_config
    from vllm.distributed import parallel_state as ps

    if not dist.is_initialized():
        return  # a single process: vLLM sets up its own one-rank world
    world = dist.get_world_size()
    if world % engine_tp:
        raise ValueError(f"world size {world} is not a multiple of the engine TP size {engine_tp}")
    if ps.model_parallel_is_initialized():
        if ps.get_tensor_model_parallel_world_size() != engine_tp:
            raise RuntimeError("vLLM parallel state already built with another TP size")
        return
    cuda = torch.cuda.is_available()
    backend = "nccl" if cuda else "gloo"
    local_rank = int(os.environ.get("LOCAL_RANK", dist.get_rank()))
    with set_current_vllm_config(VllmConfig()):
        ps.init_distributed_environment(world, dist.get_rank(), "env://", local_rank, backend)
        ps.initialize_model_parallel(engine_tp, 1, backend=backend)


class ColocatedRollout:
    """The rollout engine of one data-parallel replica, seen from any of its ranks."""

    def __init__(self, model: str | Path, cfg: EngineConfig, group: dist.ProcessGroup | None = None,
                 tp: int | None = None) -> None:
        """`group`: the replica's ranks (Megatron's model-parallel group, TP fastest); None = the
        whole world (or a single process). `tp`: the training TP size (GPU engine TP)."""
        self.cfg = cfg
        self.cuda = torch.cuda.is_available()
        self.distributed = dist.is_initialized()
        self.group = group
        self.ranks = dist.get_process_group_ranks(group or dist.group.WORLD) if self.distributed else [0]
        self.rank = dist.get_rank() if self.distributed else 0
        tp = tp or 1
        vllm = cfg.backend == "vllm"
        if self.cuda and vllm:
            if cfg.tensor_parallel_size not in (1, tp):
                raise ValueError(f"rollout.tensor_parallel_size={cfg.tensor_parallel_size} must equal "
                                 f"parallel.tensor={tp} on GPU (the engine reuses the training TP group)")
            self.engine_tp = tp
            # slots: the TP groups of the replica (one per pipeline stage); slot leader = its first rank
            self.slots = [self.ranks[k:k + tp] for k in range(0, len(self.ranks), tp)]
        else:
            self.engine_tp = 1  # CPU vLLM, or the HF reference: one engine on the replica leader
            self.slots = [[self.ranks[0]]]
        self.engine: VLLMEngine | HFGenerator | None = None
        if vllm and self.distributed:
            init_engine_parallel_state(self.engine_tp)
        if any(self.rank in s for s in self.slots):
            if vllm:
                from nemo_r1.rollout.vllm_engine import VLLMEngine

                ecfg = replace(cfg, tensor_parallel_size=self.engine_tp) if self.cuda else cfg
                self.engine = VLLMEngine(model, ecfg, external_launcher=self.cuda and self.distributed)
            else:
                from nemo_r1.rollout.hf_engine import HFGenerator

                self.engine = HFGenerator(model, cfg)
        self.tokenizer = self.engine.tokenizer if self.engine is not None else _tokenizer(model)

    @property
    def is_leader(self) -> bool:
        return self.rank == self.ranks[0]

    def generate(self, prompts: Sequence[str] | Sequence[Sequence[int]],
                 sampling: SamplingConfig) -> list[Rollout]:
        """Collective over the replica: returns all its rollouts on every rank of it."""
        slot = next((k for k, s in enumerate(self.slots) if self.rank in s), None)
        mine: list[Rollout] | None = None
        if slot is not None:
            idx = list(range(slot, len(prompts), len(self.slots)))
            mine = self.engine.generate([prompts[i] for i in idx], sampling) if idx else []
            for r in mine:
                r.prompt_index = idx[r.prompt_index]
            if self.rank != self.slots[slot][0]:
                mine = None  # TP peers hold copies of the slot leader's output
        if not self.distributed or len(self.ranks) == 1:
            return mine or []
        gathered: list[list[Rollout] | None] = [None] * len(self.ranks)
        dist.all_gather_object(gathered, mine, group=self.group)
        out = [r for part in gathered if part for r in part]
        out.sort(key=lambda r: (r.prompt_index, r.sample_index))
        return out

    def refit(self, weights: Iterable[tuple[str, Tensor]]) -> RefitStats:
        """Collective over the replica. Engine ranks stream `weights` into their engine; the others
        only drain the iterator, because producing it (gathering TP/PP shards) is itself a
        collective every rank must take part in."""
        if self.engine is not None:
            stats = self.engine.update_weights(weights)
        else:
            stats = RefitStats()
            with Timer() as tm:
                for _name, _t in weights:
                    stats.tensors += 1
            stats.seconds = tm.seconds
        return stats

    def shutdown(self) -> None:
        """Every rank, before the trainer destroys its process groups: drops the engine and vLLM's
        groups; the trainer's default group stays usable."""
        if self.cfg.backend != "vllm":
            self.engine = None
        elif self.engine is not None:
            self.engine.shutdown()
            self.engine = None
        elif self.distributed:
            from nemo_r1.rollout.vllm_engine import release_engine_groups

            release_engine_groups()

    def sleep(self) -> None:
        if self.engine is not None:
            self.engine.sleep()

    def wake_up(self) -> None:
        if self.engine is not None:
            self.engine.wake_up()


def _tokenizer(model: str | Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(model))
