"""Stream trainer weights into an engine and check the set is complete.

vLLM's `reload_weights` must see the *whole* model in one call (its layer-wise reload only
restores a layer once every piece of it, e.g. q, k and v of the fused qkv, has arrived), so a
refit is one generator over all tensors. The producer bounds memory: `iter_hf_weights` gathers the
Megatron shards one bucket at a time (`rollout.refit_bucket_mb`). This side must not buffer on top
of that (a second bucket alive at once would double the extra memory), so `stream` passes each
tensor straight through and only casts, counts and checks names.
"""

from __future__ import annotations

import json
import struct
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor


@dataclass
class RefitStats:
    """What one refit moved; `timing/refit_s` comes from `seconds`."""

    tensors: int = 0
    bytes: int = 0
    max_tensor_bytes: int = 0
    seconds: float = 0.0
    names: set[str] = field(default_factory=set, repr=False)


def stream(weights: Iterable[tuple[str, Tensor]], dtype: torch.dtype | None = None,
           stats: RefitStats | None = None) -> Iterator[tuple[str, Tensor]]:
    """Pass (name, tensor) pairs through one at a time: detached, cast to the engine's dtype,
    contiguous; refuses a name sent twice and records what went by in `stats`."""
    stats = stats if stats is not None else RefitStats()
    for name, t in weights:
        if name in stats.names:
            raise ValueError(f"refit: weight {name!r} was sent twice")
        t = t.detach()
        if dtype is not None and t.dtype != dtype:
            t = t.to(dtype)
        t = t.contiguous()
        nbytes = t.numel() * t.element_size()
        stats.names.add(name)
        stats.tensors += 1
        stats.bytes += nbytes
        stats.max_tensor_bytes = max(stats.max_tensor_bytes, nbytes)
        yield name, t


def checkpoint_weight_names(model_dir: str | Path) -> set[str]:
    """Tensor names of an HF safetensors checkpoint, read from the file headers (no tensor data)."""
    model_dir = Path(model_dir)
    files = sorted(model_dir.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"no *.safetensors in {model_dir}: refit checks need an HF checkpoint")
    names: set[str] = set()
    for f in files:
        with open(f, "rb") as fh:
            (n,) = struct.unpack("<Q", fh.read(8))
            header = json.loads(fh.read(n))
        names.update(k for k in header if k != "__metadata__")
    return names


def check_complete(received: set[str], expected: set[str], tied_embeddings: bool) -> None:
    """Raise if the refit missed a weight the engine holds (it would silently keep the old value)."""
    optional = {"lm_head.weight"} if tied_embeddings else set()
    missing = sorted(expected - received - optional)
    if missing:
        more = f" (+{len(missing) - 5} more)" if len(missing) > 5 else ""
        raise RuntimeError(f"refit sent {len(received)} tensors but missed {missing[:5]}{more}: the "
                           "engine now mixes old and new weights; send the full HF-named state dict")


class Timer:
    def __enter__(self) -> Timer:
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.t0
