"""Pipeline tests: each stage is a real `nemo-r1` child process; the model ones run on the CPU path
(their subprocesses get CUDA_VISIBLE_DEVICES="", as the trainers' tests give theirs)."""

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def stopping_llama(tmp_path_factory) -> Path:
    from pipeline_tiny import make_stopping_llama

    return make_stopping_llama(tmp_path_factory.mktemp("stopping_llama"))
