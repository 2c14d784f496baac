"""Stream trainer weights into an engine in bounded buckets, and check the set is complete.

vLLM's `reload_weights` must see the *whole* model in one call (its layer-wise reload only
restores a layer once every piece of it, e.g. q, k and v of the fused qkv, has arrived), so the
refit is one generator over all tensors. Holding at most one bucket of gathered tensors at a time
bounds the extra memory to `bucket_bytes`, never a second full copy of the model.
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
    max_bucket_bytes: int = 0
    buckets: int = 0
    seconds: float = 0.0
    names: set[str] = field(default_factory=set, repr=False)


def bucketed(weights: Iterable[tuple[str, Tensor]], bucket_bytes: int,
             dtype: torch.dtype | None = None, stats: RefitStats | None = None
             ) -> Iterator[list[tuple[str, Tensor]]]:
    """Group (name, tensor) pairs into lists of at most `bucket_bytes` (a bigger tensor goes alone).

    Tensors are detached, made contiguous and cast to `dtype` here, so the engine never aliases
    training memory that the next optimizer step will overwrite.
    """
    stats = stats if stats is not None else RefitStats()
    bucket: list[tuple[str, Tensor]] = []
    size = 0
    for name, t in weights:
        if name in stats.names:
            raise ValueError(f"refit: weight {name!r} was sent twice")
        t = t.detach()
        if dtype is not None and t.dtype != dtype:
            t = t.to(dtype)
        t = t.contiguous()
        nbytes = t.numel() * t.element_size()
        if bucket and size + nbytes > bucket_bytes:
            yield _close(bucket, size, stats)
            bucket, size = [], 0
        bucket.append((name, t))
        size += nbytes
        stats.names.add(name)
        stats.tensors += 1
        stats.bytes += nbytes
    if bucket:
        yield _close(bucket, size, stats)


def _close(bucket: list[tuple[str, Tensor]], size: int, stats: RefitStats) -> list[tuple[str, Tensor]]:
    stats.buckets += 1
    stats.max_bucket_bytes = max(stats.max_bucket_bytes, size)
    return bucket


def stream(weights: Iterable[tuple[str, Tensor]], bucket_bytes: int, dtype: torch.dtype | None = None,
           stats: RefitStats | None = None) -> Iterator[tuple[str, Tensor]]:
    """Flat (name, tensor) stream that pulls its source one bucket at a time."""
    for bucket in bucketed(weights, bucket_bytes, dtype, stats):
        yield from bucket
        bucket.clear()  # drop our references before pulling the next bucket


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
