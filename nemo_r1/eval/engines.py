"""Eval's view of the generation engines, which live in `nemo_r1.rollout`.

Eval, GRPO and `nemo-r1 generate` share one engine interface (`Generator`: batch `generate` for
GRPO, seeded streaming `stream` for eval and generate) and one config (`RolloutConfig`, the
`rollout` section). This module keeps eval's historical names for scripts: `EngineSpec` is that
config, `VllmEngine`/`HFEngine` build the rollout engines, `Completion` is the rollout one.

Every eval sample has its own seed, derived from (seed, benchmark, problem id, sample index): vLLM
honours per-request seeds, so a resumed run and a fresh one produce the same samples whatever the
batching. HF `generate` has one global RNG, so its sampled (T > 0) outputs depend on the chunk
they ran in; greedy outputs do not.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Protocol

from nemo_r1.rollout.base import Completion, EngineConfig, RolloutConfig
from nemo_r1.rollout.vllm_engine import model_max_len

EngineSpec = RolloutConfig
"""Everything a (possibly remote) worker needs to build an engine; picklable."""

EVAL_DEFAULTS: dict[str, Any] = dict(kv_cache_gib=2.0, gpu_memory_utilization=0.9, sleep_during_training=False)
"""Eval runs alone: a bigger CPU KV cache, most of the GPU, no sleeping between steps."""


class Engine(Protocol):
    """What eval's job runner accepts besides a `Generator` (test oracles, remote services)."""

    max_model_len: int

    def generate(self, prompts: list[list[int]], seeds: list[int], temperature: float, top_p: float,
                 max_new_tokens: list[int]) -> list[Completion]: ...


def eval_engine_config(model: str, **settings: Any) -> RolloutConfig:
    """The `rollout` section eval builds its engine from: eval's defaults, then `settings`."""
    return RolloutConfig(**{"model": model, **EVAL_DEFAULTS, **settings})


def VllmEngine(spec: EngineConfig | None = None, generator: Any = None) -> Any:  # noqa: N802 - eval's old class name
    """The rollout vLLM engine for `spec` (or `generator` itself: a trainer's engine)."""
    if generator is not None:
        return generator
    if spec is None:
        raise ValueError("VllmEngine needs a spec or a generator")
    return build_engine(replace(spec, backend="vllm"))


def HFEngine(spec: EngineConfig) -> Any:  # noqa: N802 - eval's old class name
    """The HF `generate` reference engine for `spec`."""
    return build_engine(replace(spec, backend="hf"))


def as_engine(obj: Any) -> Any:
    """An engine eval can drive from what a caller holds: a `Generator` (it streams), or a
    duck-typed eval `Engine`."""
    if hasattr(obj, "stream") or (hasattr(obj, "generate") and hasattr(obj, "max_model_len")):
        return obj
    raise TypeError(f"cannot evaluate with {type(obj).__name__}: pass a rollout Generator or an eval Engine")


def build_engine(spec: EngineConfig) -> Any:
    """A standalone engine from the `rollout` section (`spec.model` must be set)."""
    if spec.backend not in ("vllm", "hf"):
        raise ValueError(f"unknown eval backend {spec.backend!r}; use vllm, hf or lighteval")
    from nemo_r1.rollout import build_generator

    return build_generator(spec)


__all__ = ["Completion", "Engine", "EngineSpec", "HFEngine", "VllmEngine", "as_engine", "build_engine",
           "eval_engine_config", "model_max_len"]
