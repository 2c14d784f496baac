"""Megatron vs HF on tiny random Llama / Qwen2 / Qwen3 models across TP x PP layouts (gloo, 4 ranks).

One group of 4 CPU ranks is spawned for the whole module; it rebuilds megatron's groups for each
layout (TP1 = DP4, TP2 = DP2, PP2 = DP2, TP2xPP2) and returns numbers that the tests below check
against HF transformers computed in this process:
- logits at every layout (max abs diff < 1e-4, fp32);
- one training step at TP1 and TP2xPP2: loss, gradients (HF-named) and the updated weights;
- HF -> Megatron (TP2xPP2 dist checkpoint) -> HF round trip, resharded to TP1 on export: bit-exact;
- a checkpoint saved at TP2 resumes at PP2 and the next two steps' losses match an uninterrupted run.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from mcore_tiny_models import (
    FAMILIES,
    global_tokens,
    hf_logits,
    hf_loss_and_grads,
    make_tiny,
    tokens,
    train_batch,
)

from nemo_r1.distributed import run_on_cpu_ranks

LAYOUTS = [(1, 1), (2, 1), (1, 2), (2, 2)]
WORLD = 4


def _dp_share(batch: dict[str, torch.Tensor], mb_size: int) -> list[dict[str, torch.Tensor]]:
    """This DP rank's rows of the global batch, cut into micro-batches."""
    from megatron.core import parallel_state as ps

    dp, r = ps.get_data_parallel_world_size(), ps.get_data_parallel_rank()
    n = batch["tokens"].shape[0] // dp
    mine = {k: v[r * n:(r + 1) * n] for k, v in batch.items()}
    return [{k: v[i:i + mb_size] for k, v in mine.items()} for i in range(0, n, mb_size)]


def _loss_fn(n_tokens: float):
    def loss_fn(lp: torch.Tensor, mb: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        return -(lp * mb["mask"]).sum() / n_tokens, {"tokens": float(mb["mask"].sum())}

    return loss_fn


def _step(state, batch: dict[str, torch.Tensor]) -> float:
    """One optimizer step on the global batch; returns the global loss (sum over DP ranks)."""
    import torch.distributed as dist
    from megatron.core import parallel_state as ps

    from nemo_r1.models.train import train_step

    _, metrics = train_step(state, _dp_share(batch, 2), _loss_fn(global_tokens(batch)))
    total = torch.tensor([metrics["loss"]], dtype=torch.float64)
    dist.all_reduce(total, group=ps.get_data_parallel_group())
    return total.item()


def _is_reporter() -> bool:
    from megatron.core import parallel_state as ps

    return (ps.is_pipeline_last_stage() and ps.get_tensor_model_parallel_rank() == 0
            and ps.get_data_parallel_rank() == 0)


def _rank(hf_dirs: dict[str, str], work: str) -> dict:
    import torch.distributed as dist

    from nemo_r1.distributed import init_distributed
    from nemo_r1.models.build import build_model
    from nemo_r1.models.checkpoint import (
        checkpoint_model_info,
        latest_checkpoint,
        load_checkpoint,
        save_checkpoint,
    )
    from nemo_r1.models.config import model_info, read_hf_config
    from nemo_r1.models.convert import convert_hf_to_mcore, convert_mcore_to_hf
    from nemo_r1.models.forward import forward_logits
    from nemo_r1.models.fused import FusedRMSNorm
    from nemo_r1.models.hf_export import iter_hf_weights
    from nemo_r1.models.hf_import import load_hf_weights
    from nemo_r1.models.train import OptimSettings, setup_training, torch_optimizers

    out: dict = {"logits": {}, "step": {}, "resume": {}, "fused": {}}
    toks = tokens()
    batch = train_batch(seed=5)
    for tp, pp in LAYOUTS:
        init_distributed(tp=tp, pp=pp)
        for fam, d in hf_dirs.items():
            model = build_model(model_info(read_hf_config(d), tp=tp))
            load_hf_weights(model, d)
            norms = [type(m) for m in model.modules() if isinstance(m, torch.nn.RMSNorm)]
            out["fused"][(fam, tp, pp)] = (norms.count(FusedRMSNorm), len(norms), model.config.bias_activation_fusion)
            logits = forward_logits(model, toks)
            if _is_reporter():
                out["logits"][(fam, tp, pp)] = logits
            if (tp, pp) in [(1, 1), (2, 2)]:
                state = setup_training(model, OptimSettings(lr=1e-3, adam_eps=1e-6,
                                                            distributed_optimizer=False), 10, clip_grad=0.0)
                loss = _step(state, batch)
                grads = {n: t.clone() for n, t in iter_hf_weights(state.model, grads=True)}
                weights = {n: t.clone() for n, t in iter_hf_weights(state.model)}
                if dist.get_rank() == 0:
                    out["step"][(fam, tp, pp)] = {"loss": loss, "grads": grads, "weights": weights}

    # Round trip, under the launcher path: every rank calls the converters.
    for fam, d in hf_dirs.items():
        convert_hf_to_mcore(d, f"{work}/{fam}_mcore", tp=2, pp=2)
        convert_mcore_to_hf(f"{work}/{fam}_mcore", f"{work}/{fam}_back")  # loads at TP1 (DP4)

    # Resume: save at TP2 (DP2) after step 1, continue at PP2 (DP2).
    d = hf_dirs["llama"]
    cfg = OptimSettings(lr=2e-3, warmup_steps=1, scheduler="cosine")
    init_distributed(tp=2, pp=1)
    model = build_model(model_info(read_hf_config(d), tp=2))
    load_hf_weights(model, d)
    state = setup_training(model, cfg, total_steps=4)
    batch = train_batch(seed=10)  # the same batch each step, so the loss must go down
    losses = [_step(state, batch)]
    save_checkpoint(f"{work}/run/checkpoints/step_1", state.model, state.optimizer, state.scheduler,
                    extra_state={"step": 1, "data_position": 4})
    losses += [_step(state, batch) for _ in range(2)]
    lrs = [state.optimizer.param_groups[0]["lr"]]

    init_distributed(tp=1, pp=2)
    ckpt = latest_checkpoint(f"{work}/run")
    model = build_model(checkpoint_model_info(ckpt))
    state = setup_training(model, cfg, total_steps=4)
    extra = load_checkpoint(ckpt, state.model, state.optimizer, state.scheduler)
    out["fused_adam"] = [g["fused"] for o in torch_optimizers(state.optimizer) for g in o.param_groups]
    resumed = [_step(state, batch) for _ in range(2)]
    lrs.append(state.optimizer.param_groups[0]["lr"])
    if dist.get_rank() == 0:
        out["resume"] = {"uninterrupted": losses, "resumed": resumed, "extra": extra, "ckpt": str(ckpt), "lrs": lrs}
    return out


@pytest.fixture(scope="module")
def tiny_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny")
    return {f: make_tiny(f, root / f) for f in FAMILIES}


@pytest.fixture(scope="module")
def ranks(tiny_dirs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    work = tmp_path_factory.mktemp("work")
    results = run_on_cpu_ranks(_rank, WORLD, {k: str(v) for k, v in tiny_dirs.items()}, str(work), timeout_s=1200)
    return results[0] | {"all_logits": [r["logits"] for r in results]}, work


@pytest.mark.multiproc
@pytest.mark.timeout(1500)
@pytest.mark.parametrize("family", FAMILIES)
def test_logits_match_hf_at_every_layout(ranks, tiny_dirs, family: str) -> None:
    res, _ = ranks
    ref = hf_logits(tiny_dirs[family], tokens())
    got = {k: v for r in res["all_logits"] for k, v in r.items() if k[0] == family}
    assert sorted((tp, pp) for _, tp, pp in got) == sorted(LAYOUTS)
    for (_, tp, pp), logits in got.items():
        assert logits.shape == ref.shape
        diff = (logits - ref).abs().max().item()
        assert diff < 1e-4, f"{family} TP{tp} PP{pp}: max |megatron - HF| = {diff}"


@pytest.mark.multiproc
def test_cpu_models_use_the_fused_norm_and_swiglu(ranks) -> None:
    res, _ = ranks
    for key, (fused, norms, swiglu_fusion) in res["fused"].items():
        assert norms > 0 and fused == norms, f"{key}: {fused} of {norms} RMSNorms are fused"
        assert swiglu_fusion, f"{key}: bias_activation_fusion is off, so megatron's unfused glu runs"


@pytest.mark.multiproc
def test_cpu_optimizer_is_torch_fused_adam_after_setup_and_resume(ranks) -> None:
    res, _ = ranks
    flags = res["fused_adam"]  # read after load_checkpoint, which restores the saved param groups
    assert flags and all(f is True for f in flags), flags


@pytest.mark.multiproc
@pytest.mark.parametrize("family", FAMILIES)
def test_one_step_loss_grads_and_update_agree(ranks, tiny_dirs, family: str) -> None:
    res, _ = ranks
    ref_loss, ref_grads = hf_loss_and_grads(tiny_dirs[family], train_batch(seed=5))
    tp1, tp2pp2 = res["step"][(family, 1, 1)], res["step"][(family, 2, 2)]
    assert tp1["loss"] == pytest.approx(ref_loss, abs=1e-5)
    assert tp2pp2["loss"] == pytest.approx(tp1["loss"], abs=1e-5)
    assert set(tp1["grads"]) == set(tp2pp2["grads"]) == set(ref_grads)  # tied: no separate lm_head
    for name, g in ref_grads.items():
        scale = g.abs().max().item() + 1e-12
        assert (tp1["grads"][name] - g).abs().max().item() / scale < 1e-4, name
        assert (tp2pp2["grads"][name] - tp1["grads"][name]).abs().max().item() / scale < 1e-4, name
    # Adam eps 1e-6 (not 1e-8) keeps the first update lr*g/(|g|+eps) well-conditioned where g ~ 0
    for name, w in tp1["weights"].items():
        assert (tp2pp2["weights"][name] - w).abs().max().item() < 1e-5, name


@pytest.mark.multiproc
@pytest.mark.parametrize("family", FAMILIES)
def test_round_trip_tp2pp2_is_bit_exact(ranks, tiny_dirs, family: str) -> None:
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    _, work = ranks
    src = load_file(tiny_dirs[family] / "model.safetensors")
    back_dir = work / f"{family}_back"
    back = load_file(back_dir / "model.safetensors")
    assert set(back) == set(src)
    for name, t in src.items():
        assert back[name].dtype == t.dtype and torch.equal(back[name], t), name
    assert (work / f"{family}_mcore" / "metadata.json").exists()
    model = AutoModelForCausalLM.from_pretrained(back_dir)  # loadable as a normal HF checkpoint
    with torch.no_grad():
        assert torch.equal(model(tokens()).logits, hf_logits(tiny_dirs[family], tokens()))


@pytest.mark.multiproc
def test_checkpoint_saved_at_tp2_resumes_at_pp2(ranks) -> None:
    res, _ = ranks
    r = res["resume"]
    assert r["ckpt"].endswith("checkpoints/step_1")
    assert r["extra"] == {"step": 1, "data_position": 4}
    assert r["lrs"][0] == pytest.approx(r["lrs"][1])  # scheduler state came back
    # the steps after the resume reproduce the uninterrupted run (Adam moments and step count too)
    assert r["resumed"] == pytest.approx(r["uninterrupted"][1:], abs=1e-5)
    assert r["uninterrupted"][2] < r["uninterrupted"][1] < r["uninterrupted"][0]  # and it is training
