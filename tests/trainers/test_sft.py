"""`nemo-r1 sft` against HF transformers: at lr 0 the step-1 train/loss is HF's mean token NLL over
the same loss tokens (text, messages, prompt/completion; packed and unpacked; TP1 and TP2xPP2);
packed rows give each document the logprobs and gradients it gets alone, and letting attention
cross documents breaks that."""

import pytest
import torch
from sft_ranks import (
    FORMATS,
    SPLITS,
    hf_step1_loss,
    lr0_losses,
    make_tiny_chat_model,
    split_runs,
    tp1_checks,
    write_datasets,
)

from nemo_r1.distributed import run_on_cpu_ranks


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("sft")
    hf = make_tiny_chat_model(root / "model")
    write_datasets(root / "data")
    refs = {f"{fmt}/{'packed' if p else 'unpacked'}": hf_step1_loss(hf, root / "data", fmt, p)
            for fmt in FORMATS for p in (True, False)}
    return root, hf, refs


def _check_losses(losses: dict[str, float], refs: dict[str, float]) -> None:
    assert sorted(losses) == sorted(refs)
    for key, ref in refs.items():
        assert losses[key] == pytest.approx(ref, abs=1e-5), key
    assert max(refs.values()) - min(refs.values()) > 0.01  # the cases are not all the same number


def test_lr0_loss_is_hf_nll_and_packing_is_exact_at_tp1(setup):
    root, hf, refs = setup
    res = run_on_cpu_ranks(tp1_checks, 1, str(hf), str(root / "data"), str(root / "tp1"), threads=2)[0]
    _check_losses(res["losses"], refs)
    packed, unpacked, crossing = (res["packing"][k] for k in ("packed", "unpacked", "crossing"))
    assert packed[0].numel() > 100
    for a, b in zip(packed, unpacked, strict=True):  # logprobs on loss tokens, loss, every gradient
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    # the same comparison with attention across document boundaries fails
    assert (packed[0] - crossing[0]).abs().max() > 0.1
    assert any((a - b).abs().max() > 1e-3 for a, b in zip(packed[2:], crossing[2:], strict=True))


@pytest.mark.timeout(600)
def test_lr0_loss_is_hf_nll_at_tp2_pp2(setup):
    root, hf, refs = setup
    losses = run_on_cpu_ranks(lr0_losses, 4, str(hf), str(root / "data"), str(root / "tp2pp2"), 2, 2)[0]
    _check_losses(losses, refs)


@pytest.mark.timeout(600)
def test_split_of_the_global_batch_does_not_change_the_step(setup):
    """(micro-batch 1, accumulation 8), (4, 2) and (2, 2 on 2 DP ranks): the same loss and grad
    norm at step 1 (the gradient's scale), and the same loss after the update (its direction)."""
    root, hf, _ = setup
    runs = run_on_cpu_ranks(split_runs, 2, str(hf), str(root / "data"), str(root / "splits"))[0]
    ref = runs[SPLITS[0][0]]
    assert ref[1]["train/loss"] < ref[0]["train/loss"] - 0.01  # the update moved the loss
    for name, _, _ in SPLITS[1:]:
        for a, b in zip(runs[name], ref, strict=True):
            for key in ("train/loss", "train/grad_norm"):
                assert a[key] == pytest.approx(b[key], rel=1e-5), (name, a["step"], key)
