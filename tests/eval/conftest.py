"""Fixtures for eval tests: a tiny random Llama saved as an HF dir with the SmolLM2 tokenizer."""

import pytest
from eval_helpers import build_tiny_llama


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> str:
    return str(build_tiny_llama(tmp_path_factory.mktemp("tiny_llama")))
