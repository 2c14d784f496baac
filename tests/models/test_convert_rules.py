"""Weight rules, registry and converter entry points without a process group (plus one spawned
conversion through the public functions, as `nemo-r1 convert` runs it)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
import torch
from mcore_tiny_models import make_tiny, tokens

from nemo_r1.models.config import model_info, padded_vocab
from nemo_r1.models.registry import ArchSpec, get_arch, register, supported
from nemo_r1.models.rules import LLAMA_RULES, Dims, Reader, Rule, merge, shard


class DictReader(Reader):
    """Reader over in-memory tensors (a safetensors slice supports the same indexing)."""

    def __init__(self, tensors: dict[str, torch.Tensor]) -> None:
        class Slice:
            def __init__(self, t: torch.Tensor) -> None:
                self.t = t

            def __getitem__(self, idx):  # noqa: ANN001
                return self.t[idx]

            def get_shape(self) -> list[int]:
                return list(self.t.shape)

        super().__init__(lambda name: Slice(tensors[name]))


DIMS = Dims(num_heads=8, num_kv_heads=4, head_dim=16, vocab_size=300, padded_vocab_size=512)


@pytest.mark.parametrize("tp", [1, 2, 4])
@pytest.mark.parametrize("kind,shapes", [
    ("replicated", [(64,)]), ("column", [(64, 32)]), ("row", [(32, 64)]), ("vocab", [(300, 32)]),
    ("gate_up", [(64, 32), (64, 32)]), ("qkv", [(128, 32), (64, 32), (64, 32)]), ("qkv", [(128,), (64,), (64,)]),
])
def test_shard_then_merge_is_identity(kind: str, shapes: list[tuple[int, ...]], tp: int) -> None:
    g = torch.Generator().manual_seed(0)
    names = tuple(f"t{i}" for i in range(len(shapes)))
    src = {n: torch.randn(s, generator=g) for n, s in zip(names, shapes, strict=True)}
    rule = Rule("m", names, kind)
    shards = [shard(rule, names, DictReader(src), DIMS, tp, r) for r in range(tp)]
    for n, t in zip(names, merge(rule, shards, DIMS), strict=True):
        assert torch.equal(t, src[n])
    if kind == "vocab":
        assert sum(s.shape[0] for s in shards) == 512 and torch.all(torch.cat(shards)[300:] == 0)


def test_qkv_layout_is_per_query_group() -> None:
    """Megatron's fused qkv rows: for each KV head g, its 2 query heads, then k_g, then v_g."""
    hd, qpg = DIMS.head_dim, DIMS.num_heads // DIMS.num_kv_heads
    q = torch.arange(128.0)[:, None].repeat(1, 2)
    k = 1000 + torch.arange(64.0)[:, None].repeat(1, 2)
    v = 2000 + torch.arange(64.0)[:, None].repeat(1, 2)
    fused = shard(Rule("m", ("q", "k", "v"), "qkv"), ("q", "k", "v"), DictReader({"q": q, "k": k, "v": v}), DIMS, 2, 1)
    # TP rank 1 holds KV groups 2 and 3: q rows 64..127, k/v rows 32..63
    assert fused.shape == (2 * (qpg + 2) * hd, 2)
    assert fused[0, 0] == 64 and fused[qpg * hd, 0] == 1032 and fused[(qpg + 1) * hd, 0] == 2032
    assert fused[(qpg + 2) * hd, 0] == 64 + qpg * hd


def test_padded_vocab_is_multiple_of_128_tp() -> None:
    assert [padded_vocab(300, tp) for tp in (1, 2, 4)] == [384, 512, 512]
    assert padded_vocab(49152, 3) == 49152


def test_unsupported_architecture_names_supported_ones() -> None:
    with pytest.raises(ValueError, match=r"unsupported architecture \['GPT2LMHeadModel'\]; supported: "
                       r"LlamaForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM"):
        get_arch({"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2"})


def test_registry_refuses_duplicates_and_one_entry_adds_a_family() -> None:
    with pytest.raises(ValueError, match="already registered"):
        register(ArchSpec("llama", ("SomethingElse",), LLAMA_RULES))
    with pytest.raises(ValueError, match="already map to 'qwen2'"):
        register(ArchSpec("qwen2b", ("Qwen2ForCausalLM",), LLAMA_RULES))
    cfg = {"architectures": ["MistralForCausalLM"], "hidden_size": 128, "intermediate_size": 256,
           "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 64,
           "vocab_size": 300}
    with pytest.raises(ValueError, match="MistralForCausalLM"):
        model_info(cfg)
    from nemo_r1.models import registry

    register(ArchSpec("mistral", ("MistralForCausalLM",), LLAMA_RULES, must_be_off=("sliding_window",)))
    try:
        assert "MistralForCausalLM" in supported() and model_info(cfg).arch == "mistral"
    finally:
        del registry._REGISTRY["mistral"]


def test_config_errors_name_the_key(tmp_path: Path) -> None:
    base = {"architectures": ["LlamaForCausalLM"], "hidden_size": 128, "intermediate_size": 256,
            "num_hidden_layers": 4, "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 300}
    with pytest.raises(ValueError, match="missing key 'num_hidden_layers'"):
        model_info({k: v for k, v in base.items() if k != "num_hidden_layers"})
    with pytest.raises(ValueError, match="hidden_act='gelu'"):
        model_info(base | {"hidden_act": "gelu"})
    with pytest.raises(ValueError, match="rope_type='yarn'"):
        model_info(base | {"rope_parameters": {"rope_type": "yarn", "factor": 2.0}})
    info = model_info(base)
    assert (info.head_dim, info.num_kv_heads, info.tied, info.rope_theta) == (32, 2, False, 10000.0)


@pytest.mark.multiproc
@pytest.mark.timeout(600)
def test_convert_cli_spawns_ranks_and_round_trips(tmp_path: Path) -> None:
    """`nemo-r1 convert` outside a launcher: PP2 import on 2 spawned ranks, export on 1."""
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    from nemo_r1.models.cli import convert_main

    src = make_tiny("qwen2", tmp_path / "hf")
    (src / "tokenizer_config.json").write_text(json.dumps({"model_max_length": 256}))
    ns = argparse.Namespace
    assert convert_main(ns(direction="hf-to-mcore", hf=str(src), out=str(tmp_path / "mc"), tp=1, pp=2)) == 0
    assert convert_main(ns(direction="mcore-to-hf", ckpt=str(tmp_path / "mc"), out=str(tmp_path / "back"))) == 0
    a, b = load_file(src / "model.safetensors"), load_file(tmp_path / "back" / "model.safetensors")
    assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)
    assert (tmp_path / "back" / "tokenizer_config.json").exists()  # side files travel with the checkpoint
    meta = json.loads((tmp_path / "mc" / "nemo_r1.json").read_text())
    assert meta["layout"]["pp"] == 2 and meta["model_info"]["padded_vocab_size"] == 384
    m = AutoModelForCausalLM.from_pretrained(tmp_path / "back")
    ref = AutoModelForCausalLM.from_pretrained(src)
    with torch.no_grad():
        assert torch.equal(m(tokens()).logits, ref(tokens()).logits)


def test_convert_cli_reports_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from nemo_r1.models.cli import convert_main

    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["GPT2LMHeadModel"]}))
    rc = convert_main(argparse.Namespace(direction="hf-to-mcore", hf=str(tmp_path), out=str(tmp_path / "o"), tp=1,
                                         pp=1))
    assert rc == 2 and "supported: LlamaForCausalLM" in capsys.readouterr().err
    rc = convert_main(argparse.Namespace(direction="mcore-to-hf", ckpt=str(tmp_path), out=str(tmp_path / "o")))
    assert rc == 2 and "not a nemo-r1 Megatron checkpoint" in capsys.readouterr().err
