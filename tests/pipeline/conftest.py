"""Pipeline tests: each stage is a real `nemo-r1` child process on the CPU path."""

import os
from pathlib import Path

import pytest

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")  # the CPU path on any machine, as the stages' tests do


@pytest.fixture(scope="session")
def stopping_llama(tmp_path_factory) -> Path:
    from pipeline_tiny import make_stopping_llama

    return make_stopping_llama(tmp_path_factory.mktemp("stopping_llama"))
