"""Rank functions of test_config_keys.py: a GRPO and an SFT run on tiny models with every config
dataclass recording which of its fields the code reads. Copies of the whole tree (config.yaml,
the logger's hyper-parameters, EngineConfig built from the rollout section) are not reads: recording
pauses inside them, and the copy's own fields record under the section they came from."""

from __future__ import annotations

import dataclasses
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


class Reads:
    """Patches `__getattribute__` of each section's dataclass to add `section.field` on a read."""

    def __init__(self) -> None:
        from omegaconf import OmegaConf

        from nemo_r1.config import Config, RewardSpec
        from nemo_r1.rollout.base import EngineConfig, RolloutConfig

        self.seen: set[str] = set()
        self.on = True
        sections: dict[type, str] = {RewardSpec: "rewards", EngineConfig: "rollout"}
        for f in dataclasses.fields(Config):
            value = getattr(Config(), f.name)
            if dataclasses.is_dataclass(value):
                sections[type(value)] = f.name
        for cls, name in sections.items():
            self._patch(cls, name)
        self._patch(Config, "")
        self._pause(RolloutConfig, "engine")
        for attr in ("structured", "to_yaml", "to_container"):
            self._pause(OmegaConf, attr, static=True)

    def _patch(self, cls: type, section: str) -> None:
        names = {f.name for f in dataclasses.fields(cls)}
        orig = cls.__getattribute__
        reads = self

        def getattribute(obj: Any, name: str) -> Any:
            value = orig(obj, name)
            if reads.on and name in names and not (not section and dataclasses.is_dataclass(value)):
                reads.seen.add(f"{section}.{name}" if section else name)
            return value

        cls.__getattribute__ = getattribute  # type: ignore[method-assign]

    def _pause(self, owner: Any, attr: str, static: bool = False) -> None:
        fn = getattr(owner, attr)
        reads = self

        @contextmanager
        def paused():
            was, reads.on = reads.on, False
            try:
                yield
            finally:
                reads.on = was

        def wrapper(*a: Any, **k: Any) -> Any:
            with paused():
                return fn(*a, **k)

        setattr(owner, attr, staticmethod(wrapper) if static else wrapper)


def grpo_reads(model_dir: str, out: str) -> list[str]:
    """Two GRPO steps (KL on, mu 2, checkpoints saved and pruned, held-out scores) on a tiny Llama."""
    reads = Reads()
    import nemo_r1.trainers.grpo_run as loop
    from nemo_r1.config import RewardSpec, load_config
    from nemo_r1.rewards import REWARDS

    REWARDS.add("alternate", lambda completions, params, **columns: [float(i % 2) for i in range(len(completions))])

    cfg = load_config(ROOT / "configs/grpo/demo.yaml", [
        f"output_dir={out}", f"model.path={model_dir}", "train.max_steps=2", "rollout.max_new_tokens=8",
        "grpo.prompts_per_step=2", "grpo.num_generations=2", "train.micro_batch_size=2", "checkpoint.every=1",
        "checkpoint.keep=1", "logging.tensorboard=false", "logging.plots=false", "data.max_samples=8",
        "rollout.kv_cache_gib=0.125", "grpo.beta=0.01", "grpo.mu=2", "grpo.dynamic_sampling=true",
        "data.eval=generated:arithmetic:heldout", "grpo.eval_problems=4"])
    cfg.rewards = [RewardSpec(name="alternate", weight=1.0)]  # a signal in every group: the step trains
    reads.seen.clear()  # load_config's own checks are not the code using the values
    loop.run_grpo(cfg)
    return sorted(reads.seen)


def sft_reads(model_dir: str, data: str, out: str) -> list[str]:
    """Two SFT steps with an eval set and a checkpoint, on a tiny chat model."""
    reads = Reads()
    from nemo_r1.config import load_config
    from nemo_r1.trainers.sft import run_sft

    cfg = load_config(None, [
        f"model.path={model_dir}", f"data.train={data}", f"data.eval={data}", "data.format=messages",
        f"output_dir={out}", "train.max_seq_len=192", "train.global_batch_size=4", "train.micro_batch_size=2",
        "train.max_steps=2", "sft.eval_every=1", "checkpoint.every=1", "logging.tensorboard=false"])
    reads.seen.clear()
    run_sft(cfg)
    return sorted(reads.seen)
