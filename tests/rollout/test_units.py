"""Pure parts of the rollout package: configs, refit streaming, completeness check, agreement math."""

from __future__ import annotations

import math

import pytest
import torch

from nemo_r1.rollout.agreement import diff_of_lists, logprob_diff, truncated_is_weight
from nemo_r1.rollout.base import EngineConfig, SamplingConfig, split_stop
from nemo_r1.rollout.budget import BudgetConfig
from nemo_r1.rollout.refit import RefitStats, check_complete, checkpoint_weight_names, stream


@pytest.mark.parametrize("kw, field", [
    (dict(n=0), "rollout.n"), (dict(temperature=-1), "rollout.temperature"), (dict(top_p=0), "rollout.top_p"),
    (dict(top_k=0), "rollout.top_k"), (dict(max_new_tokens=0), "rollout.max_new_tokens"),
    (dict(stop="</s>"), "rollout.stop"),
])
def test_sampling_config_names_the_bad_field(kw, field):
    with pytest.raises(ValueError, match=field):
        SamplingConfig(**kw)


def test_engine_and_budget_configs_reject_bad_values():
    with pytest.raises(ValueError, match="rollout.backend"):
        EngineConfig(backend="sglang")
    with pytest.raises(ValueError, match="refit_bucket_mb"):
        EngineConfig(refit_bucket_mb=0)
    with pytest.raises(ValueError, match="rollout.block_size"):
        EngineConfig(block_size=24)
    with pytest.raises(ValueError, match="max_thinking_tokens"):
        BudgetConfig(min_thinking_tokens=10, max_thinking_tokens=5)
    assert not BudgetConfig().active and BudgetConfig(min_thinking_tokens=3).active


def test_engine_kwargs_block_size():
    from nemo_r1.rollout.vllm_engine import engine_kwargs

    assert engine_kwargs("m", EngineConfig(), cuda=False, external_launcher=False)["block_size"] == 32
    assert "block_size" not in engine_kwargs("m", EngineConfig(), cuda=True, external_launcher=False)
    assert engine_kwargs("m", EngineConfig(block_size=128), cuda=False, external_launcher=False)["block_size"] == 128


def test_split_stop_takes_the_earliest():
    assert split_stop("a</think>b.c", ["." , "</think>"]) == ("a", "</think>")
    assert split_stop("abc", ["x"]) == ("abc", None)


def _weights(sizes):
    return [(f"w{i}", torch.full((n,), float(i), dtype=torch.float64)) for i, n in enumerate(sizes)]


def test_stream_casts_counts_and_never_runs_ahead_of_the_consumer():
    pulled = []

    def source():
        for name, t in _weights([10, 20, 30]):  # float64
            pulled.append(name)
            yield name, t

    stats = RefitStats()
    s = stream(source(), dtype=torch.float32, stats=stats)
    name, t = next(s)
    # one tensor at a time: the producer's buckets bound the memory, nothing is buffered here
    assert name == "w0" and pulled == ["w0"] and t.dtype == torch.float32
    assert [n for n, _ in s] == ["w1", "w2"]
    assert stats.tensors == 3 and stats.bytes == 60 * 4 and stats.max_tensor_bytes == 120
    assert stats.names == {"w0", "w1", "w2"}


def test_duplicate_and_missing_weights_are_refused():
    with pytest.raises(ValueError, match="sent twice"):
        list(stream(iter(_weights([1]) * 2)))
    check_complete({"a", "b"}, {"a", "b", "lm_head.weight"}, tied_embeddings=True)
    with pytest.raises(RuntimeError, match="missed"):
        check_complete({"a"}, {"a", "b"}, tied_embeddings=False)


def test_checkpoint_names_come_from_safetensors_headers(tmp_path):
    from safetensors.torch import save_file

    save_file({"x.weight": torch.zeros(2), "y.bias": torch.ones(3)}, str(tmp_path / "model.safetensors"))
    assert checkpoint_weight_names(tmp_path) == {"x.weight", "y.bias"}
    with pytest.raises(FileNotFoundError, match="safetensors"):
        checkpoint_weight_names(tmp_path / "nothing")


def test_logprob_diff_counts_only_masked_tokens():
    train = torch.tensor([[-1.0, -2.0, -3.0], [-0.5, -0.5, 0.0]])
    roll = torch.tensor([[-1.1, -2.0, -9.0], [-0.2, -0.5, 5.0]])
    mask = torch.tensor([[1, 1, 0], [1, 1, 0]])
    m = logprob_diff(train, roll, mask)
    assert m["train/logprob_diff"] == pytest.approx((0.1 + 0 + 0.3 + 0) / 4)
    assert m["train/logprob_diff_max"] == pytest.approx(0.3)
    assert m["rollout/tokens_compared"] == 4
    assert logprob_diff(train, roll, torch.zeros_like(mask))["train/logprob_diff"] == 0.0
    with pytest.raises(ValueError, match="shapes"):
        logprob_diff(train, roll[:, :2], mask)
    assert diff_of_lists([[-1.0], [-2.0, -3.0]], [[-1.5], [-2.0, -2.0]])["train/logprob_diff_max"] == 1.0


def test_truncated_is_weight():
    w = truncated_is_weight(torch.tensor([0.0, -1.0, -3.0]), torch.tensor([-1.0, -1.0, -1.0]), cap=2.0)
    assert w.tolist() == pytest.approx([2.0, 1.0, math.exp(-2.0)])  # e^1 > cap is cut to 2
    with pytest.raises(ValueError):
        truncated_is_weight(torch.zeros(1), torch.zeros(1), cap=0)
