"""Load an HF safetensors checkpoint into this rank's Megatron shard.

Each rank opens the safetensors files lazily and reads only the rows/columns of its own TP shard
for the layers of its own PP stage, so no rank materialises the whole model.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import torch
import torch.distributed as dist
from safetensors import safe_open
from tqdm import tqdm

from nemo_r1.models.build import info_of, unwrap
from nemo_r1.models.rules import TE_ALIASES, Reader, Rule, expand, shard


class SafetensorsReader(Reader):
    """Lazy slices over every *.safetensors file of an HF directory."""

    def __init__(self, hf_dir: str | Path) -> None:
        self.dir = Path(hf_dir)
        self.files: dict[str, Path] = {}
        index = self.dir / "model.safetensors.index.json"
        if index.exists():
            for name, fname in json.loads(index.read_text())["weight_map"].items():
                self.files[name] = self.dir / fname
        else:
            for f in sorted(self.dir.glob("*.safetensors")):
                with safe_open(str(f), framework="pt") as h:
                    for name in h.keys():
                        self.files[name] = f
        if not self.files:
            raise FileNotFoundError(f"no *.safetensors weights in {self.dir} (pytorch_model.bin is not supported; "
                                    "re-save with save_pretrained(safe_serialization=True))")
        self._open: dict[Path, object] = {}
        super().__init__(self._slice)

    def _slice(self, name: str):
        f = self.files.get(name)
        if f is None:
            raise KeyError(f"{self.dir}: tensor {name!r} not found in the safetensors files")
        if f not in self._open:
            self._open[f] = safe_open(str(f), framework="pt")
        return self._open[f].get_slice(name)

    def __contains__(self, name: str) -> bool:
        return name in self.files

    def names(self) -> set[str]:
        return set(self.files)


def param_name(params: dict[str, torch.Tensor], name: str) -> str | None:
    """The model's name for a canonical (local-spec) Megatron name, trying the TE-spec alias."""
    if name in params:
        return name
    for local, te in TE_ALIASES.items():
        if name.endswith(local):
            alt = name[: -len(local)] + te
            if alt in params:
                return alt
    return None


def local_rules(model: torch.nn.Module) -> Iterator[tuple[Rule, str, tuple[str, ...]]]:
    """(rule, stage-local Megatron name, HF names) for every parameter this PP stage owns."""
    m = unwrap(model)
    info = info_of(m)
    for rule in info.spec.rules:
        if rule.where == "first" and not m.pre_process:
            continue
        if rule.where == "last" and not m.post_process:
            continue
        if rule.where != "layer":
            mname, hf = expand(rule, None)
            if mname == "output_layer.weight" and info.tied:
                hf = ("model.embed_tokens.weight",)  # tied: the last stage keeps its own copy
            yield rule, mname, hf
            continue
        for j, layer in enumerate(m.decoder.layers):
            _, hf = expand(rule, layer.layer_number - 1)  # layer_number: global, 1-based
            yield rule, rule.mcore.format(i=j), hf


@torch.no_grad()
def load_hf_weights(model: torch.nn.Module, hf_dir: str | Path, progress: bool = False) -> int:
    """Copy this rank's shard of every weight from `hf_dir` into `model`; returns tensors loaded.

    Raises if a model parameter is left unset or a shape disagrees (names both sides).
    """
    from megatron.core import parallel_state as ps

    m = unwrap(model)
    info = info_of(m)
    tp, r = ps.get_tensor_model_parallel_world_size(), ps.get_tensor_model_parallel_rank()
    reader = SafetensorsReader(hf_dir)
    params = {n: p for n, p in m.named_parameters()}
    loaded: set[str] = set()
    rules = list(local_rules(m))
    bar = None
    if progress and (not dist.is_initialized() or dist.get_rank() == 0):
        bar = tqdm(total=len(rules), desc=f"import {Path(hf_dir).name} (rank 0 shard)", unit="tensor")
    for rule, mname, hf in rules:
        if bar is not None:
            bar.update(1)
        target = param_name(params, mname)
        if target is None:
            if mname == "output_layer.weight" and info.tied:
                continue  # PP=1 and tied: the output layer reuses the embedding, no own weight
            raise KeyError(f"model has no parameter {mname!r} (rule for {hf}); parameters: {sorted(params)[:8]}...")
        missing = [h for h in hf if h not in reader]
        if missing:
            raise KeyError(f"{hf_dir}: missing HF tensor(s) {missing} for {mname}")
        t = shard(rule, hf, reader, info.dims, tp, r)
        p = params[target]
        if tuple(t.shape) != tuple(p.shape):
            raise ValueError(f"{mname} <- {hf}: shard shape {tuple(t.shape)} != parameter shape {tuple(p.shape)} "
                             f"(tp={tp}, rank {r}); is config.json consistent with the weights?")
        p.copy_(t.to(p.dtype))
        loaded.add(target)
    if bar is not None:
        bar.close()
    left = sorted(set(params) - loaded)
    if left:
        raise RuntimeError(f"no HF rule filled these parameters: {left}; add a rule to the registry entry")
    return len(loaded)
