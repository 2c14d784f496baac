"""Rollouts: the generator interface, the colocated vLLM engine and its HF reference, weight refit,
logprob agreement and budget forcing. Heavy backends are imported lazily (vLLM takes ~20 s)."""

from nemo_r1.rollout.base import EngineConfig, Generator, Rollout, SamplingConfig


def build_generator(model: str, cfg: EngineConfig) -> Generator:
    """A standalone engine (one process, no training group): `vllm` or the `hf` reference."""
    if cfg.backend == "vllm":
        from nemo_r1.rollout.vllm_engine import VLLMEngine

        return VLLMEngine(model, cfg)
    from nemo_r1.rollout.hf_engine import HFGenerator

    return HFGenerator(model, cfg)


__all__ = ["EngineConfig", "Generator", "Rollout", "SamplingConfig", "build_generator"]
