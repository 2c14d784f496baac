"""Shared test settings: keep torch from oversubscribing the 2 CI cores."""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


import pytest  # noqa: E402
import torch  # noqa: E402


@pytest.fixture(autouse=True)
def _restore_grad_mode():
    """Each test starts with autograd on, whatever a library imported by an earlier test did."""
    torch.set_grad_enabled(True)
    yield
    torch.set_grad_enabled(True)
