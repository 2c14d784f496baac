"""`convert_hf_to_mcore` and `convert_mcore_to_hf`: the importable halves of `nemo-r1 convert`.

Outside a launcher they spawn tp*pp local CPU ranks (gloo) and run there; under torchrun /
`nemo-r1 launch` (RANK/WORLD_SIZE set) every rank calls them and takes its part directly.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable
from pathlib import Path

import torch
import torch.distributed as dist
from safetensors import safe_open
from safetensors.torch import save_file
from tqdm import tqdm

from nemo_r1.models.checkpoint import (
    HF_SUBDIR,
    checkpoint_model_info,
    copy_hf_side_files,
    load_checkpoint,
    read_meta,
    save_checkpoint,
)
from nemo_r1.models.config import DTYPES, model_info, read_hf_config

SHARD_BYTES = 2 * 1024**3


def _under_launcher() -> bool:
    # A one-rank default group left by an in-process engine (vLLM creates one) is not a launcher.
    if dist.is_initialized():
        return dist.get_world_size() > 1
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def _run(fn, tp: int, pp: int, *args):
    if _under_launcher():
        return fn(tp, pp, *args)
    from nemo_r1.distributed import run_on_cpu_ranks

    n = tp * pp
    threads = max(1, (os.cpu_count() or 1) // n)
    return run_on_cpu_ranks(fn, n, tp, pp, *args, threads=threads, cpu_only=True)[0]


def convert_hf_to_mcore(hf_dir: str | Path, out_dir: str | Path, tp: int = 1, pp: int = 1,
                        dtype: str = "float32") -> Path:
    """HF safetensors dir -> Megatron dist checkpoint at TP x PP (loadable at any other layout).

    Each rank reads only its own shard of the weights. Errors before spawning anything for an
    unsupported architecture or a layout the model cannot be split into.
    """
    hf_dir, out_dir = Path(hf_dir), Path(out_dir)
    info = model_info(read_hf_config(hf_dir), tp=tp, source=str(hf_dir / "config.json"))
    if info.num_layers % pp:
        raise ValueError(f"--pp {pp} does not divide num_hidden_layers={info.num_layers}")
    if dtype not in DTYPES:
        raise ValueError(f"dtype {dtype!r} must be one of {list(DTYPES)}")
    _run(_hf_to_mcore_rank, tp, pp, str(hf_dir), str(out_dir), dtype)
    return out_dir


def _hf_to_mcore_rank(tp: int, pp: int, hf_dir: str, out_dir: str, dtype: str) -> str:
    from nemo_r1.distributed import init_distributed
    from nemo_r1.models.build import build_model
    from nemo_r1.models.hf_import import load_hf_weights

    init_distributed(tp=tp, pp=pp)
    info = model_info(read_hf_config(hf_dir), tp=tp)
    model = build_model(info, dtype=dtype)
    load_hf_weights(model, hf_dir, progress=True)
    save_checkpoint(out_dir, model, hf_dir=hf_dir)
    return out_dir


def convert_mcore_to_hf(ckpt_dir: str | Path, out_dir: str | Path, dtype: str | None = None, tp: int = 1,
                        pp: int = 1) -> Path:
    """Megatron checkpoint (from convert or training) -> HF dir: safetensors + config + tokenizer.

    Loads at TP x PP (default 1 x 1: one process; the checkpoint reshards), gathers full tensors
    and writes them atomically. dtype: float32 | bfloat16 | float16; default = the dtype in the
    source config.json (so a bf16 model round-trips to bf16).
    """
    ckpt_dir, out_dir = Path(ckpt_dir), Path(out_dir)
    read_meta(ckpt_dir)  # clear error if this is not one of our checkpoints
    if dtype is not None and dtype not in DTYPES:
        raise ValueError(f"dtype {dtype!r} must be one of {list(DTYPES)}")
    _run(_mcore_to_hf_rank, tp, pp, str(ckpt_dir), str(out_dir), dtype)
    return out_dir


def _mcore_to_hf_rank(tp: int, pp: int, ckpt_dir: str, out_dir: str, dtype: str | None) -> str:
    from nemo_r1.distributed import init_distributed
    from nemo_r1.models.build import build_model
    from nemo_r1.models.hf_export import iter_hf_weights

    init_distributed(tp=tp, pp=pp)
    meta = read_meta(ckpt_dir)
    info = checkpoint_model_info(ckpt_dir)
    model = build_model(info, dtype=meta.get("dtype", "float32"))
    load_checkpoint(ckpt_dir, model, load_rng=False)
    hf_cfg = dict(info.hf_config)
    out_name = dtype or hf_cfg.get("dtype") or hf_cfg.get("torch_dtype") or meta.get("dtype", "float32")
    if out_name not in DTYPES:
        out_name = "float32"
    weights = iter_hf_weights(model, dtype=DTYPES[out_name])
    if dist.get_rank() == 0:
        write_hf_dir(weights, Path(out_dir), Path(ckpt_dir) / HF_SUBDIR, hf_cfg, out_name)
    else:
        for _ in weights:  # take part in the gathers
            pass
    dist.barrier()
    return out_dir


def write_hf_dir(weights: Iterable[tuple[str, torch.Tensor]], out_dir: Path, side_files: Path | None,
                 hf_config: dict, dtype_name: str, shard_bytes: int = SHARD_BYTES) -> None:
    """Write an HF model dir atomically (temp dir, then rename): sharded safetensors + index,
    config.json (dtype updated), tokenizer and generation files copied from `side_files`."""
    tmp = out_dir.parent / f".{out_dir.name}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    current: dict[str, torch.Tensor] = {}
    size, parts = 0, 0
    for name, t in tqdm(weights, desc=f"export -> {out_dir.name}", unit="tensor"):
        nbytes = t.numel() * t.element_size()
        if current and size + nbytes > shard_bytes:
            parts += 1
            save_file(current, str(tmp / f"part-{parts:05d}.safetensors"), metadata={"format": "pt"})
            current, size = {}, 0
        current[name] = t.contiguous().clone()
        size += nbytes
    parts += 1
    save_file(current, str(tmp / f"part-{parts:05d}.safetensors"), metadata={"format": "pt"})
    del current
    _finish_shards(tmp, parts)
    if side_files is not None and side_files.is_dir():
        copy_hf_side_files(side_files, tmp)
    cfg = dict(hf_config)
    cfg["dtype"] = dtype_name
    cfg.pop("torch_dtype", None)
    (tmp / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")
    if out_dir.exists():
        shutil.rmtree(out_dir)
    os.replace(tmp, out_dir)


def _finish_shards(tmp: Path, n: int) -> None:
    """Rename parts to HF's model[-0000k-of-0000n].safetensors and write the index if n > 1."""
    if n == 1:
        os.replace(tmp / "part-00001.safetensors", tmp / "model.safetensors")
        return
    weight_map: dict[str, str] = {}
    total = 0
    for k in range(1, n + 1):
        final = f"model-{k:05d}-of-{n:05d}.safetensors"
        part = tmp / f"part-{k:05d}.safetensors"
        total += part.stat().st_size
        with safe_open(str(part), framework="pt") as h:
            for name in h.keys():
                weight_map[name] = final
        os.replace(part, tmp / final)
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (tmp / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))
