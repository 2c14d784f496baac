"""Stream a sharded Megatron model out as full HF-named tensors (rollout refit, HF export).

`iter_hf_weights` is a collective over the model-parallel group (all TP and PP ranks of one
data-parallel replica iterate it together). For each pipeline stage in turn it all-gathers every
parameter over TP, turns the shards into HF tensors with the registry's rules, and broadcasts
them over PP in flat buckets of at most `bucket_bytes`, so every rank of the replica receives the
full model one bucket at a time and never holds more than one bucket of gathered tensors.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor

from nemo_r1.models.build import info_of, unwrap
from nemo_r1.models.hf_import import local_rules, param_name
from nemo_r1.models.rules import Rule, merge

DEFAULT_BUCKET_BYTES = 256 * 1024 * 1024


@dataclass(frozen=True)
class _Entry:
    rule: Rule
    param: str  # this stage's parameter name
    hf: tuple[str, ...]
    hf_shapes: tuple[tuple[int, ...], ...]

    @property
    def nbytes(self) -> int:
        return sum(int(torch.Size(s).numel()) for s in self.hf_shapes) * 4


def _entries(model: torch.nn.Module) -> list[_Entry]:
    """This stage's exportable parameters with their full HF shapes (computed on meta tensors)."""
    from megatron.core import parallel_state as ps

    m = unwrap(model)
    info = info_of(m)
    tp = ps.get_tensor_model_parallel_world_size()
    params = dict(m.named_parameters())
    out = []
    for rule, mname, hf in local_rules(m):
        if mname == "output_layer.weight" and info.tied:
            continue  # a copy of the embedding kept on the last stage; HF ties it
        name = param_name(params, mname)
        if name is None:
            raise KeyError(f"model has no parameter {mname!r}")
        shard = params[name]
        fake = [torch.empty(shard.shape, device="meta") for _ in range(1 if rule.kind == "replicated" else tp)]
        shapes = tuple(tuple(t.shape) for t in merge(rule, fake, info.dims))
        out.append(_Entry(rule, name, hf, shapes))
    return out


def _tensor(p: torch.nn.Parameter, grads: bool) -> Tensor:
    if not grads:
        return p.detach()
    g = getattr(p, "main_grad", None)
    g = p.grad if g is None else g
    if g is None:
        return torch.zeros_like(p)
    return g.detach()


def _gather_tp(t: Tensor, rule: Rule) -> list[Tensor]:
    from megatron.core import parallel_state as ps

    tp = ps.get_tensor_model_parallel_world_size()
    if tp == 1 or rule.kind == "replicated":
        return [t]
    shards = [torch.empty_like(t) for _ in range(tp)]
    dist.all_gather(shards, t.contiguous(), group=ps.get_tensor_model_parallel_group())
    return shards


def _buckets(entries: list[_Entry], bucket_bytes: int) -> Iterator[list[_Entry]]:
    bucket: list[_Entry] = []
    size = 0
    for e in entries:
        if bucket and size + e.nbytes > bucket_bytes:
            yield bucket
            bucket, size = [], 0
        bucket.append(e)
        size += e.nbytes
    if bucket:
        yield bucket


@torch.no_grad()
def iter_hf_weights(model: torch.nn.Module, bucket_bytes: int = DEFAULT_BUCKET_BYTES, dtype: torch.dtype | None = None,
                    grads: bool = False) -> Iterator[tuple[str, Tensor]]:
    """Yield (hf_name, full tensor) for the whole model on every rank of the model-parallel group.

    A collective: all TP x PP ranks of a replica must iterate it to the end together. Tensors come
    out in HF order per layer (q, k, v and gate, up consecutively, as vLLM fuses them); tied models
    yield `model.embed_tokens.weight` only. `dtype` casts on the way out (default: keep fp32/bf16
    of the training weights). `grads=True` streams gradients instead (tests, debugging).
    """
    from megatron.core import parallel_state as ps

    m = unwrap(model)
    info = info_of(m)
    params = dict(m.named_parameters())
    pp = ps.get_pipeline_model_parallel_world_size()
    mine = _entries(m)
    per_stage: list[list[_Entry]] = [mine]
    if pp > 1:
        per_stage = [None] * pp  # type: ignore[list-item]
        dist.all_gather_object(per_stage, mine, group=ps.get_pipeline_model_parallel_group())
    my_stage = ps.get_pipeline_model_parallel_rank()
    pp_ranks = dist.get_process_group_ranks(ps.get_pipeline_model_parallel_group()) if pp > 1 else []
    for stage, entries in enumerate(per_stage):
        for bucket in _buckets(entries, bucket_bytes):
            out: list[tuple[str, Tensor]] = []
            if stage == my_stage:
                for e in bucket:
                    shards = _gather_tp(_tensor(params[e.param], grads), e.rule)
                    out.extend(zip(e.hf, merge(e.rule, shards, info.dims), strict=True))
            if pp > 1:
                out = _broadcast_bucket(out, bucket, pp_ranks[stage], stage == my_stage,
                                        _dtype_of(params, grads))
            for name, t in out:
                yield name, (t if dtype is None else t.to(dtype))
            del out


def _dtype_of(params: dict[str, torch.nn.Parameter], grads: bool) -> torch.dtype:
    p = next(iter(params.values()))
    if grads:
        g = getattr(p, "main_grad", None)
        return g.dtype if g is not None else p.dtype
    return p.dtype


def _broadcast_bucket(out: list[tuple[str, Tensor]], bucket: list[_Entry], src: int, is_src: bool,
                      dtype: torch.dtype) -> list[tuple[str, Tensor]]:
    """One flat broadcast over the PP group carries the whole bucket."""
    from megatron.core import parallel_state as ps

    names = [n for e in bucket for n in e.hf]
    shapes = [s for e in bucket for s in e.hf_shapes]
    numels = [int(torch.Size(s).numel()) for s in shapes]
    if is_src:
        flat = torch.cat([t.reshape(-1).to(dtype) for _, t in out])
    else:
        flat = torch.empty(sum(numels), dtype=dtype, device=_device())
    dist.broadcast(flat, src=src, group=ps.get_pipeline_model_parallel_group())
    parts = flat.split(numels)
    return [(n, p.view(s)) for n, p, s in zip(names, parts, shapes, strict=True)]


def _device() -> torch.device:
    from nemo_r1.platform import accelerator

    return accelerator()


def hf_state_dict(model: torch.nn.Module, dtype: torch.dtype | None = None) -> dict[str, Tensor]:
    """The whole model as an HF state dict on every model-parallel rank (collective; export only)."""
    return {n: t.clone() for n, t in iter_hf_weights(model, dtype=dtype)}
