"""Megatron dist_checkpointing save/load with resharding, made atomic and resumable.

A checkpoint directory holds:
- the dist checkpoint (metadata.json, common.pt, *.distcp): model, and optionally the distributed
  optimizer in megatron's `fully_reshardable` format, the LR scheduler and the caller's
  `extra_state` (data position, step, ...). Saved at one TP x PP x DP layout, it loads at another.
- nemo_r1.json: the ModelInfo (HF config, padded vocab) and the layout it was saved at.
- hf/: the source HF config and tokenizer files, so an HF export needs nothing else.
- rng/rank_N.pt: each rank's torch + megatron-tracker RNG states, restored only at the same layout
  (with another layout no per-rank mapping exists; trainers reseed per step anyway).

Saves go to `.<name>.tmp` and are renamed into place by rank 0 after every rank finished, so a
crash never leaves a half-written `step_N/` that `latest_checkpoint` would pick.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from nemo_r1.models.build import info_of, unwrap
from nemo_r1.models.config import DTYPES, ModelInfo

META_FILE = "nemo_r1.json"
HF_SUBDIR = "hf"
OPTIM_FORMAT = {"distrib_optim_sharding_type": "fully_reshardable"}
# Files copied from an HF model dir into every checkpoint (tokenizer, chat template, configs).
HF_SIDE_FILES = ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
                 "special_tokens_map.json", "tokenizer.model", "vocab.json", "merges.txt", "chat_template.jinja",
                 "chat_template.json", "added_tokens.json")


def _rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def _barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def copy_hf_side_files(src: str | Path, dst: str | Path) -> None:
    """Copy config + tokenizer files (not weights) from an HF dir; missing ones are skipped."""
    src, dst = Path(src), Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    for name in HF_SIDE_FILES:
        if (src / name).is_file():
            shutil.copy2(src / name, dst / name)


def read_meta(ckpt_dir: str | Path) -> dict[str, Any]:
    path = Path(ckpt_dir) / META_FILE
    if not path.exists():
        raise FileNotFoundError(f"{ckpt_dir} is not a nemo-r1 Megatron checkpoint (no {META_FILE}); convert an HF "
                                "model with `nemo-r1 convert hf-to-mcore` or point at checkpoints/step_N")
    return json.loads(path.read_text())


def checkpoint_model_info(ckpt_dir: str | Path) -> ModelInfo:
    """The ModelInfo a checkpoint was saved with (its padded vocab is kept on load at any TP)."""
    return ModelInfo.from_json(read_meta(ckpt_dir)["model_info"])


def _sharded_state(model: torch.nn.Module, optimizer: Any, scheduler: Any, extra_state: dict | None,
                   loading: bool) -> dict[str, Any]:
    sd: dict[str, Any] = {"model": unwrap(model).sharded_state_dict()}
    if optimizer is not None:
        if not loading:
            from nemo_r1.models.train import init_unstepped_state

            init_unstepped_state(optimizer)
        sd["optimizer"] = optimizer.sharded_state_dict(sd["model"], is_loading=loading, metadata=OPTIM_FORMAT)
    if scheduler is not None:
        sd["scheduler"] = scheduler.state_dict()
    if extra_state is not None:
        sd["extra_state"] = extra_state
    return sd


def _rng_state() -> dict[str, Any]:
    from megatron.core.tensor_parallel.random import get_cuda_rng_tracker

    state = {"torch": torch.get_rng_state(), "tracker": get_cuda_rng_tracker().get_states()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    from megatron.core.tensor_parallel.random import get_cuda_rng_tracker

    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])
    get_cuda_rng_tracker().set_states(state["tracker"])


def _layout() -> dict[str, int]:
    from megatron.core import parallel_state as ps

    return {"tp": ps.get_tensor_model_parallel_world_size(), "pp": ps.get_pipeline_model_parallel_world_size(),
            "dp": ps.get_data_parallel_world_size(), "world": dist.get_world_size() if dist.is_initialized() else 1}


def save_checkpoint(ckpt_dir: str | Path, model: torch.nn.Module, optimizer: Any = None, scheduler: Any = None,
                    extra_state: dict[str, Any] | None = None, hf_dir: str | Path | None = None) -> Path:
    """Collective: every rank calls it. Writes `ckpt_dir` atomically and returns it.

    hf_dir: where to copy config/tokenizer files from (default: the model's own source, i.e. the
    `hf/` of the checkpoint it was loaded from, if it recorded one).
    """
    from megatron.core import dist_checkpointing

    final = Path(ckpt_dir)
    tmp = final.parent / f".{final.name}.tmp"
    info = info_of(model)
    if _rank() == 0:
        if tmp.exists():
            shutil.rmtree(tmp)  # left over from a crashed save
        tmp.mkdir(parents=True)
    _barrier()
    dist_checkpointing.save(_sharded_state(model, optimizer, scheduler, extra_state, loading=False), str(tmp))
    (tmp / "rng").mkdir(exist_ok=True)
    torch.save(_rng_state(), tmp / "rng" / f"rank_{_rank():05d}.pt")
    if _rank() == 0:
        src = hf_dir or getattr(unwrap(model), "nemo_hf_dir", None)
        if src is not None and Path(src).is_dir():
            copy_hf_side_files(src, tmp / HF_SUBDIR)
        else:  # at least the config, so the export can rebuild the model
            (tmp / HF_SUBDIR).mkdir(exist_ok=True)
            (tmp / HF_SUBDIR / "config.json").write_text(json.dumps(info.hf_config, indent=2))
        dtype = next(unwrap(model).parameters()).dtype
        meta = {"format": 1, "model_info": info.to_json(), "layout": _layout(),
                "dtype": {v: k for k, v in DTYPES.items()}.get(dtype, "float32"),
                "has_optimizer": optimizer is not None, "has_scheduler": scheduler is not None,
                "optimizer_format": OPTIM_FORMAT}
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2))
    _barrier()
    if _rank() == 0:
        old = final.parent / f".{final.name}.old"
        if final.exists():
            os.replace(final, old)
        os.replace(tmp, final)
        if old.exists():
            shutil.rmtree(old)
    _barrier()
    return final


def _is_distributed(optimizer: Any) -> bool:
    from megatron.core.optimizer.distrib_optimizer import DistributedOptimizer

    return any(isinstance(o, DistributedOptimizer) for o in getattr(optimizer, "chained_optimizers", [optimizer]))


def _check_optimizer_kind(ckpt_dir: Path, optimizer: Any) -> None:
    """The distributed and the plain optimizer save their state in different layouts; loading one
    into the other fails deep inside megatron (KeyError 'pre_wd_mult'). Name the key instead."""
    from megatron.core import dist_checkpointing

    common = dist_checkpointing.load_common_state_dict(str(ckpt_dir)).get("optimizer") or {}
    saved = "param_state_sharding_type" in common  # only the distributed optimizer writes it
    if saved != _is_distributed(optimizer):
        raise ValueError(f"{ckpt_dir}: its optimizer state was saved with optim.distributed_optimizer={str(saved).lower()}, "
                         f"this run has optim.distributed_optimizer={str(not saved).lower()}; resume it with "
                         f"optim.distributed_optimizer={str(saved).lower()} or start a new output_dir")


def load_checkpoint(ckpt_dir: str | Path, model: torch.nn.Module, optimizer: Any = None, scheduler: Any = None,
                    load_rng: bool = True) -> dict[str, Any]:
    """Collective: restore what `save_checkpoint` wrote, resharding to the current layout.

    Returns the saved `extra_state` ({} if none). With `optimizer`, a checkpoint without optimizer
    state (e.g. fresh from `convert hf-to-mcore`) loads the weights and re-syncs the optimizer's
    main params from them, i.e. a fresh start from those weights.
    """
    from megatron.core import dist_checkpointing

    ckpt_dir = Path(ckpt_dir)
    meta = read_meta(ckpt_dir)
    saved = ModelInfo.from_json(meta["model_info"])
    info = info_of(model)
    if saved.padded_vocab_size != info.padded_vocab_size or saved.num_layers != info.num_layers:
        raise ValueError(f"{ckpt_dir}: saved model (layers={saved.num_layers}, padded vocab="
                         f"{saved.padded_vocab_size}) does not match the model built here (layers={info.num_layers}, "
                         f"padded vocab={info.padded_vocab_size}); build it from checkpoint_model_info(ckpt_dir)")
    with_optim = optimizer is not None and meta.get("has_optimizer", False)
    with_sched = scheduler is not None and meta.get("has_scheduler", False)
    if with_optim:
        _check_optimizer_kind(ckpt_dir, optimizer)
    # Only the sharded parts are requested; the common ones (scheduler, extra_state, optimizer
    # param groups) come back from common.pt as saved.
    sd = _sharded_state(model, optimizer if with_optim else None, None, None, loading=True)
    loaded = dist_checkpointing.load(sd, str(ckpt_dir))
    unwrap(model).load_state_dict(loaded["model"])
    if with_optim:
        optimizer.load_state_dict(loaded["optimizer"])
        from nemo_r1.models.train import use_fused_cpu_adam

        use_fused_cpu_adam(optimizer)  # the saved param groups' flags came back with the state
    elif optimizer is not None:
        optimizer.reload_model_params()  # main (fp32) params from the freshly loaded weights
    if with_sched:
        scheduler.load_state_dict(loaded["scheduler"])
    if load_rng:
        same = meta.get("layout") == _layout()
        rng = ckpt_dir / "rng" / f"rank_{_rank():05d}.pt"
        if same and rng.exists():
            _set_rng_state(torch.load(rng, weights_only=False))
    src = ckpt_dir / HF_SUBDIR
    if src.is_dir():
        unwrap(model).nemo_hf_dir = str(src)
    return dict(loaded.get("extra_state") or {})


_STEP = re.compile(r"^step_(\d+)$")


def latest_checkpoint(output_dir: str | Path) -> Path | None:
    """The highest complete `output_dir/checkpoints/step_N/` (temp dirs of crashed saves ignored)."""
    root = Path(output_dir) / "checkpoints"
    if not root.is_dir():
        return None
    best: tuple[int, Path] | None = None
    for p in root.iterdir():
        m = _STEP.match(p.name)
        if m and p.is_dir() and (p / META_FILE).exists() and (p / "metadata.json").exists():
            n = int(m.group(1))
            if best is None or n > best[0]:
                best = (n, p)
    return best[1] if best else None


def checkpoint_dir(output_dir: str | Path, step: int) -> Path:
    """Where step N's checkpoint goes: `output_dir/checkpoints/step_N`."""
    return Path(output_dir) / "checkpoints" / f"step_{step}"
