"""Rollouts: the generator interface, the colocated vLLM engine and its HF reference, weight refit,
logprob agreement and budget forcing. Heavy backends are imported lazily (vLLM takes ~20 s)."""

from nemo_r1.rollout.base import Completion, EngineConfig, Generator, Rollout, RolloutConfig, SamplingConfig


def build_generator(cfg: EngineConfig, model: str | None = None) -> Generator:
    """A standalone engine (one process, no training group): `vllm` or the `hf` reference, loading
    `model` or else `cfg.model`."""
    if cfg.backend == "vllm":
        from nemo_r1.rollout.vllm_engine import VLLMEngine

        return VLLMEngine(model, cfg)
    from nemo_r1.rollout.hf_engine import HFGenerator

    return HFGenerator(model, cfg)


__all__ = ["Completion", "EngineConfig", "Generator", "Rollout", "RolloutConfig", "SamplingConfig",
           "build_generator"]
