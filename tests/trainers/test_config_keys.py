"""Every config key is read by the code: a GRPO and an SFT run record the fields the code reads,
and the walk of the config tree finds no key outside those reads and a short list of keys whose
reader these CPU runs cannot reach (each with the reason and where it is read)."""

import dataclasses
import json
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "rollout"))
sys.path.insert(0, str(HERE))

from config_reads_ranks import grpo_reads, sft_reads  # noqa: E402
from rollout_tiny import make_tiny_llama  # noqa: E402
from sft_ranks import make_tiny_chat_model, write_datasets  # noqa: E402

from nemo_r1.config import Config  # noqa: E402
from nemo_r1.distributed import run_on_cpu_ranks  # noqa: E402

NOT_REACHED = {
    "rollout.gpu_memory_utilization": "nemo_r1/rollout/vllm_engine.py",  # vLLM on CUDA only
    "rollout.sleep_during_training": "nemo_r1/rollout/vllm_engine.py",  # vLLM's sleep mode, CUDA only
    "rollout.hf_batch_size": "nemo_r1/rollout/hf_engine.py",  # rollout.backend=hf
}
"""Keys whose reader these CPU runs cannot reach, with the file that reads them."""


def config_keys() -> set[str]:
    """Leaf keys of the tree: a nested dataclass is walked, a list or mapping value is one key."""
    keys = set()
    for f in dataclasses.fields(Config):
        value = getattr(Config(), f.name)
        if dataclasses.is_dataclass(value):
            keys |= {f"{f.name}.{g.name}" for g in dataclasses.fields(value)}
        else:
            keys.add(f.name)
    return keys


@pytest.mark.multiproc
@pytest.mark.timeout(900)
def test_every_config_key_is_read(tmp_path):
    from nemo_r1.embedded import ensure_smollm2

    llama = make_tiny_llama(str(tmp_path / "tiny"), str(ensure_smollm2()))
    chat = make_tiny_chat_model(tmp_path / "chat")
    data = write_datasets(tmp_path / "data")["messages"]
    grpo = set(run_on_cpu_ranks(grpo_reads, 1, llama, str(tmp_path / "grpo"), timeout_s=400)[0])
    sft = set(run_on_cpu_ranks(sft_reads, 1, str(chat), str(data), str(tmp_path / "sft"), timeout_s=400)[0])
    heldout = json.loads((tmp_path / "grpo" / "heldout.json").read_text())  # data.eval was scored at both ends
    assert [heldout[k]["step"] for k in ("base", "final")] == [0, 2]
    assert heldout["final"]["scores"]["alternate"]["n"] == 4
    keys = config_keys()
    assert "grpo.loss_type" in grpo and "sft.eval_every" in sft  # the recorder sees reads
    assert not set(NOT_REACHED) - keys, "a listed key no longer exists"
    root = HERE.parents[1]
    for key, where in NOT_REACHED.items():
        assert f"cfg.{key.split('.')[-1]}" in (root / where).read_text(), f"{where} does not read {key}"
    assert not set(NOT_REACHED) & (grpo | sft), "a listed key is read after all: drop it from the list"
    unread = keys - grpo - sft - set(NOT_REACHED)
    assert not unread, f"config keys no code reads: {sorted(unread)}"
