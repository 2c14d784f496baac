"""Every patch of a third-party library lives in this module, each with a one-line reason.

First, the patches megatron-core 0.16.x needs to run on a CPU-only torch build with gloo.

megatron-core assumes a CUDA device in a few places (the tensor-parallel RNG tracker, `device=
torch.cuda.current_device()`, `.cuda()` calls, stream/event timing, the optimizer's grad-dtype
checks). On a machine without CUDA, `apply_cpu_patches()` maps those onto the CPU; on a GPU machine
it does nothing, so the GPU path runs megatron unmodified. All patches live here (one module,
pinned to the megatron-core line in pyproject), each with a one-line reason, and are applied by an
explicit call at start-up (`nemo_r1.distributed.init_distributed` calls it), never at import time.

Then the speed and hygiene patches other modules switch on where they need them (each idempotent,
the replacement code living with its owner): megatron's CPU RoPE (`install_cpu_rope`), vLLM's CPU
top-p sampler (`install_fast_top_p`), vLLM's hold on torch's thread count (`keep_torch_threads`)
and lighteval's import-time autograd switch and details logger (`import_lighteval`,
`mute_lighteval_details`).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from typing import Any

import torch

log = logging.getLogger(__name__)

_APPLIED = False
CPU = torch.device("cpu")


def cuda_available() -> bool:
    """True when this process can use CUDA; decided before any patch touches torch.cuda."""
    return torch.cuda.is_available()


def accelerator() -> torch.device:
    """The device tensors should live on: the current CUDA device, else the CPU."""
    if cuda_available():
        return torch.device("cuda", torch.cuda.current_device())
    return CPU


def apply_cpu_patches() -> bool:
    """Patch torch.cuda and megatron-core for CPU + gloo; idempotent. Returns True if patches are on."""
    global _APPLIED
    if _APPLIED:
        return True
    if cuda_available():
        return False
    for name, fn in _PATCHES:
        fn()
        log.debug("cpu patch applied: %s", name)
    _APPLIED = True
    return True


def patches_applied() -> bool:
    return _APPLIED


# ---------------------------------------------------------------------------------------------
# torch.cuda stand-ins. Only installed when CUDA is absent, so no code can observe a difference
# between "CUDA missing" and "CUDA mapped to the CPU" except that megatron stops raising.


class _NullStream:
    """Stand-in for torch.cuda.Stream: CPU ops are synchronous, so waiting/recording is a no-op."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def wait_stream(self, *args: Any) -> None:
        pass

    def wait_event(self, *args: Any) -> None:
        pass

    def record_event(self, event: Any = None) -> _NullEvent:
        return event or _NullEvent()

    def synchronize(self) -> None:
        pass


class _NullEvent:
    """Stand-in for torch.cuda.Event: times with perf_counter so megatron's timers still report."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.t = 0.0

    def record(self, stream: Any = None) -> None:
        import time

        self.t = time.perf_counter()

    def synchronize(self) -> None:
        pass

    def wait(self, stream: Any = None) -> None:
        pass

    def query(self) -> bool:
        return True

    def elapsed_time(self, end: _NullEvent) -> float:
        return (end.t - self.t) * 1000.0


def _patch_torch_cuda() -> None:
    c = torch.cuda
    # device=torch.cuda.current_device() appears ~90 times in megatron: make it the CPU.
    c.current_device = lambda: CPU
    # megatron seeds/forks "the CUDA generator" for TP-region dropout: use the CPU generator.
    # (not torch.manual_seed itself: that calls torch.cuda.manual_seed_all and would recurse).
    c.manual_seed = lambda seed: torch.default_generator.manual_seed(int(seed))
    c.get_rng_state = lambda device="cuda": torch.get_rng_state()
    c.set_rng_state = lambda new_state, device="cuda": torch.set_rng_state(new_state)
    c.random.get_rng_state = c.get_rng_state
    c.random.set_rng_state = c.set_rng_state
    # CPU kernels are synchronous; megatron calls synchronize/empty_cache around timers and groups.
    c.synchronize = lambda device=None: None
    c.empty_cache = lambda: None
    c.set_device = lambda device: None
    # Streams/events only order async GPU work (DDP overlap, timers): no-ops on the CPU.
    c.Stream = _NullStream
    c.Event = _NullEvent
    c.current_stream = lambda device=None: _NullStream()
    c.default_stream = lambda device=None: _NullStream()
    c.stream = lambda s=None: contextlib.nullcontext()
    # nvtx ranges are profiler annotations; the CPU build has no nvtx library.
    c.nvtx.range_push = lambda *a, **k: None
    c.nvtx.range_pop = lambda *a, **k: None
    c.nvtx.range = lambda *a, **k: contextlib.nullcontext()
    # megatron reports memory in logs/rerun checks; the CPU has no CUDA allocator stats.
    c.memory_allocated = lambda device=None: 0
    c.max_memory_allocated = lambda device=None: 0
    c.memory_reserved = lambda device=None: 0


def _patch_tensor_cuda() -> None:
    # `.cuda()` moves buffers/optimizer state to "the GPU": keep them where they are (the CPU).
    def tensor_cuda(self: torch.Tensor, device: Any = None, non_blocking: bool = False, **kw: Any) -> torch.Tensor:
        return self

    def module_cuda(self: torch.nn.Module, device: Any = None) -> torch.nn.Module:
        return self

    torch.Tensor.cuda = tensor_cuda  # type: ignore[method-assign]
    torch.nn.Module.cuda = module_cuda  # type: ignore[method-assign]


def _patch_megatron_rng() -> None:
    from megatron.core.tensor_parallel import random as mrandom

    # The tracker reads/writes the CUDA generator via private helpers: route them to the CPU one.
    mrandom._get_cuda_rng_state = lambda device="cuda", clone=False, graph_safe=False: torch.get_rng_state()
    mrandom._set_cuda_rng_state = lambda new_state, device=-1, graph_safe=False: torch.set_rng_state(new_state)


class _CpuTorch:
    """`torch` as seen by a few megatron modules that hard-code `device="cuda"` in factory calls.

    Installed as the module-global name `torch` of those modules only, so the rest of the process
    keeps the real torch; every attribute except the factories below is the real one.
    """

    _FACTORIES = frozenset({"tensor", "zeros", "ones", "empty", "full", "arange", "as_tensor"})

    def __getattr__(self, name: str) -> Any:
        attr = getattr(torch, name)
        if name in self._FACTORIES:
            return _on_cpu(attr)
        return attr


def _on_cpu(factory: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
    def wrapper(*args: Any, **kwargs: Any) -> torch.Tensor:
        dev = kwargs.get("device")
        if dev is not None and torch.device(dev).type == "cuda":
            kwargs["device"] = CPU
        return factory(*args, **kwargs)

    return wrapper


# Modules with hard-coded device="cuda" tensors on paths we use (masks, loss scale, grad norm,
# token counts in the pipeline schedule).
_CUDA_LITERAL_MODULES = (
    "megatron.core.transformer.utils",
    "megatron.core.optimizer.optimizer",
    "megatron.core.optimizer.grad_scaler",
    "megatron.core.optimizer.clip_grads",
    "megatron.core.pipeline_parallel.schedules",
    "megatron.core.rerun_state_machine",
    "megatron.core.utils",
)


def _patch_cuda_literals() -> None:
    import importlib

    proxy = _CpuTorch()
    for name in _CUDA_LITERAL_MODULES:
        importlib.import_module(name).torch = proxy


_TENSOR_TYPE = torch.Tensor.type


def _cuda_type_name(self: torch.Tensor, dtype: Any = None, non_blocking: bool = False, **kw: Any) -> Any:
    if dtype is None and not kw and self.device.type == "cpu":
        return _TENSOR_TYPE(self).replace("torch.", "torch.cuda.", 1)
    return _TENSOR_TYPE(self, dtype, non_blocking, **kw)


@contextlib.contextmanager
def _cuda_type_names() -> Any:
    """Make `param.type()` report 'torch.cuda.FloatTensor' etc. for CPU tensors, temporarily (reentrant)."""
    prev = torch.Tensor.type
    torch.Tensor.type = _cuda_type_name  # type: ignore[method-assign]
    try:
        yield
    finally:
        torch.Tensor.type = prev  # type: ignore[method-assign]


def _patch_optimizer_dtype_checks() -> None:
    from megatron.core.optimizer import clip_grads, distrib_optimizer, optimizer

    # The mixed-precision optimizers and grad clipping accept only 'torch.cuda.*Tensor' params:
    # accept CPU ones inside those calls (scoped to them, not process-wide).
    targets = [
        (distrib_optimizer.DistributedOptimizer, "__init__"),
        (distrib_optimizer.DistributedOptimizer, "_build_model_and_main_param_groups"),
        (optimizer.Float16OptimizerWithFloat16Params, "__init__"),
    ]
    for cls, meth in targets:
        orig = cls.__dict__[meth]
        if isinstance(orig, staticmethod | classmethod):
            setattr(cls, meth, type(orig)(_with_cuda_type_names(orig.__func__)))
        else:
            setattr(cls, meth, _with_cuda_type_names(orig))
    clip = _with_cuda_type_names(clip_grads.clip_grad_by_total_norm_fp32)
    clip_grads.clip_grad_by_total_norm_fp32 = clip
    optimizer.clip_grad_by_total_norm_fp32 = clip  # imported by name there


def _with_cuda_type_names(fn: Callable[..., Any]) -> Callable[..., Any]:
    import functools

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with _cuda_type_names():
            return fn(*args, **kwargs)

    return wrapper


def _patch_torch_adam_step() -> None:
    from megatron.core.optimizer.distrib_optimizer import DistributedOptimizer

    # Without Apex/TE the optimizer is torch Adam, whose per-param 'step' state megatron restores
    # from param_groups, not from the resharded param state: skip it there instead of KeyError.
    set_states = DistributedOptimizer._set_main_param_and_optimizer_states

    def set_main_param_and_optimizer_states(self: Any, model_param: Any, tensors: dict) -> None:
        if "step" not in tensors and not self.config.use_precision_aware_optimizer_no_fp8_or_ds_fp8:
            group_index, group_order = self.model_param_group_index_map[model_param]
            main_param = self.optimizer.param_groups[group_index]["params"][group_order]
            state = self.optimizer.state[main_param]
            dst = {"param": main_param, **{k: v for k, v in state.items() if k != "step"}}
            for key, t in dst.items():
                t.copy_(tensors[key])
            return
        set_states(self, model_param, tensors)

    DistributedOptimizer._set_main_param_and_optimizer_states = set_main_param_and_optimizer_states

    # megatron gives every param the *same* 'step' tensor on load; torch Adam increments it in place
    # once per param, so the bias correction would run N times too fast after a resume.
    load_state_dict = DistributedOptimizer.load_state_dict

    def load_state_dict_own_steps(self: Any, state_dict: dict) -> None:
        load_state_dict(self, state_dict)
        for st in self.optimizer.state.values():
            if isinstance(st.get("step"), torch.Tensor):
                st["step"] = st["step"].clone()

    DistributedOptimizer.load_state_dict = load_state_dict_own_steps

    # state_dict() reads torch Adam's 'step' from per-param state, which is empty before the first
    # step, so loading a checkpoint into a fresh optimizer asserted: report step 0 instead.
    state_dict = DistributedOptimizer.state_dict

    def state_dict_fresh_ok(self: Any) -> dict:
        if self.optimizer.state:
            return state_dict(self)
        inner = self.optimizer.state_dict()
        groups = [{k: v for k, v in g.items() if k != "params"} | {"step": 0} for g in inner["param_groups"]]
        out: dict = {"optimizer": {"param_groups": groups}}
        if self.grad_scaler:
            out["grad_scaler"] = self.grad_scaler.state_dict()
        return out

    DistributedOptimizer.state_dict = state_dict_fresh_ok


class _CpuWgradAccum:
    """CPU stand-in for the `fused_weight_gradient_mlp_cuda` extension: main_grad += dY^T X in one
    in-place GEMM (no temporary weight-gradient tensor, no separate add in the DDP hook).
    bf16/fp16 activations with an fp32 main_grad (bf16 training) are upcast first: the CUDA kernel
    also accumulates their products in fp32, and addmm_ needs one dtype."""

    @staticmethod
    def wgrad_gemm_accum_fp32(total_input: torch.Tensor, grad_output: torch.Tensor, main_grad: torch.Tensor) -> None:
        if grad_output.dtype != main_grad.dtype:
            grad_output, total_input = grad_output.to(main_grad.dtype), total_input.to(main_grad.dtype)
        main_grad.addmm_(grad_output.t(), total_input)

    wgrad_gemm_accum_fp16 = wgrad_gemm_accum_fp32


def _patch_grad_accum_fusion() -> None:
    from megatron.core.tensor_parallel import layers

    # Weight-gradient accumulation fusion needs a CUDA extension; on CPU it is one addmm_ (opt-in per
    # module, see nemo_r1.models.train.setup_training).
    layers.fused_weight_gradient_mlp_cuda = _CpuWgradAccum
    layers._grad_accum_fusion_available = True


def _patch_plain_optimizer_step0() -> None:
    from megatron.core.optimizer.optimizer import FP32Optimizer

    # The plain (non-distributed) optimizer saves torch Adam's per-param 'step' as one common step,
    # but skips it when it is 0 (`if step:`), so a checkpoint saved before the first optimizer step
    # failed to load with KeyError 'step': restore the 0 it stood for.
    load_state_dict = FP32Optimizer.load_state_dict

    def load_state_dict_step0(self: Any, state_dict: dict) -> None:
        state = state_dict.get("state", {})
        if "common_step" not in state:
            for st in state.values():
                if isinstance(st, dict) and "exp_avg" in st:
                    st.setdefault("step", torch.zeros((), dtype=torch.float32))
        load_state_dict(self, state_dict)

    FP32Optimizer.load_state_dict = load_state_dict_step0


def _patch_checkpoint_results_queue() -> None:
    # megatron's checkpoint writer passes its write results from the save function to the finalize
    # function through the queue of a spawned multiprocessing Manager, which then lives as long as
    # the run (0.27 GB of RSS once it has imported torch to unpickle the results; bench memory).
    # nemo-r1 saves synchronously, so both functions run in this process: a plain queue does.
    import queue

    from megatron.core.dist_checkpointing.strategies import filesystem_async

    if hasattr(filesystem_async, "_get_write_results_queue"):
        filesystem_async._get_write_results_queue = queue.Queue


_PATCHES: list[tuple[str, Callable[[], None]]] = [
    ("torch.cuda", _patch_torch_cuda),
    ("Tensor.cuda", _patch_tensor_cuda),
    ("megatron rng tracker", _patch_megatron_rng),
    ("device='cuda' literals", _patch_cuda_literals),
    ("optimizer dtype checks", _patch_optimizer_dtype_checks),
    ("torch Adam step on resharded load", _patch_torch_adam_step),
    ("grad accumulation fusion", _patch_grad_accum_fusion),
    ("plain optimizer step 0 on load", _patch_plain_optimizer_step0),
    ("checkpoint results queue", _patch_checkpoint_results_queue),
]


# ---------------------------------------------------------------------------------------------
# Patches other modules switch on where they need them.

def install_cpu_rope() -> None:
    """megatron's unfused bshd RoPE -> `nemo_r1.models.rope.rope_bshd`: one pass instead of five
    temporaries, bit-identical; other layouts fall back to megatron's own function."""
    from megatron.core.models.common.embeddings import rope_utils

    from nemo_r1.models import rope

    if rope.megatron_bshd is None:
        rope.megatron_bshd = rope_utils._apply_rotary_pos_emb_bshd
        rope_utils._apply_rotary_pos_emb_bshd = rope.rope_bshd


_VLLM_TOP_P: Callable[..., Any] | None = None


def install_fast_top_p() -> bool:
    """vLLM's CPU top-k/top-p -> `nemo_r1.rollout.top_p.top_k_top_p` (same kept tokens, no vocab
    sort); GPU logits and top-k-only rows keep vLLM's function."""
    global _VLLM_TOP_P
    from vllm.v1.sample.ops import topk_topp_sampler as mod

    from nemo_r1.rollout.top_p import top_k_top_p

    if _VLLM_TOP_P is not None:
        return True
    original = mod.apply_top_k_top_p

    def patched(logits: torch.Tensor, k: torch.Tensor | None, p: torch.Tensor | None) -> torch.Tensor:
        if p is None or logits.device.type != "cpu":
            return original(logits, k, p)
        return top_k_top_p(logits, k, p)

    mod.apply_top_k_top_p = patched
    _VLLM_TOP_P = original
    return True


def uninstall_fast_top_p() -> None:
    """Restore vLLM's own top-p (benchmarks compare the two in one process)."""
    global _VLLM_TOP_P
    from vllm.v1.sample.ops import topk_topp_sampler as mod

    if _VLLM_TOP_P is not None:
        mod.apply_top_k_top_p = _VLLM_TOP_P
        _VLLM_TOP_P = None


@contextlib.contextmanager
def keep_torch_threads() -> Any:
    """vLLM's CPU worker caps torch at one thread and turns `torch.set_num_threads` into a no-op
    for the whole process; a trainer sharing the process gets both back when the block ends."""
    set_threads, threads = torch.set_num_threads, torch.get_num_threads()
    try:
        yield
    finally:
        torch.set_num_threads = set_threads
        torch.set_num_threads(threads)


def import_lighteval() -> None:
    """Import lighteval without letting it switch autograd off for the whole process:
    `lighteval.models.transformers.transformers_model` calls `torch.set_grad_enabled(False)` at
    import time (the pipeline imports it), so a trainer or test sharing the process would
    silently build graph-less losses."""
    enabled = torch.is_grad_enabled()
    try:
        import lighteval.pipeline  # noqa: F401 - imported for its side effect, undone below
    finally:
        torch.set_grad_enabled(enabled)


def mute_lighteval_details(tracker: Any) -> None:
    """lighteval's per-sample details logger calls xxhash.xxh64(str), which xxhash 4.1 rejects;
    our samples files hold the same details, so that logger is off for this tracker only."""
    tracker.details_logger.log = lambda *a, **k: None
    tracker.details_logger.aggregate = lambda *a, **k: None
