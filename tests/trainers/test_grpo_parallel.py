"""One GRPO update from fixed rollouts gives the same loss and grad norm at TP2xPP2 as at TP1."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "models"))

from grpo_parallel_ranks import grpo_update  # noqa: E402
from mcore_tiny_models import make_tiny  # noqa: E402

from nemo_r1.distributed import run_on_cpu_ranks  # noqa: E402


@pytest.mark.multiproc
def test_grpo_update_tp2pp2_equals_tp1(tmp_path):
    hf = str(make_tiny("llama", tmp_path / "llama"))
    ref = run_on_cpu_ranks(grpo_update, 1, hf, 1, 1)[0]
    par = run_on_cpu_ranks(grpo_update, 4, hf, 2, 2)
    last = [r for r in par if r["after"] is not None]
    assert ref["loss"] != 0.0 and ref["grad_norm"] > 0.0
    for r in par:  # every rank reports the same step statistics
        assert r["loss"] == pytest.approx(ref["loss"], abs=1e-5)
        assert r["grad_norm"] == pytest.approx(ref["grad_norm"], abs=1e-5, rel=1e-5)
    # and the updated weights give the same logprobs afterwards
    assert last and last[0]["after"] == pytest.approx(ref["after"], rel=1e-5)


@pytest.mark.multiproc
def test_skipping_prompt_logits_changes_nothing(tmp_path):
    """The forward projects only completion positions to the vocabulary; same step as projecting all."""
    hf = str(make_tiny("llama", tmp_path / "llama"))
    skip, full = run_on_cpu_ranks(grpo_update, 1, hf, 1, 1)[0], run_on_cpu_ranks(grpo_update, 1, hf, 1, 1, False)[0]
    assert skip["loss"] != 0.0
    for key in ("loss", "grad_norm", "logprob_diff", "after"):
        assert skip[key] == pytest.approx(full[key], rel=1e-6, abs=1e-7), key


@pytest.mark.multiproc
def test_shared_prompt_rows_give_the_same_step(tmp_path):
    """A group's completions packed behind one copy of the prompt (block mask): same loss, logprobs,
    grad norm and updated weights as one row per sample, at TP1 and at TP2xPP2."""
    from grpo_parallel_ranks import grpo_update_shared

    hf = str(make_tiny("llama", tmp_path / "llama"))
    rows = run_on_cpu_ranks(grpo_update_shared, 1, hf, 1, 1, False)[0]
    shared = run_on_cpu_ranks(grpo_update_shared, 1, hf, 1, 1, True)[0]
    two_groups_padded = run_on_cpu_ranks(grpo_update_shared, 1, hf, 1, 1, True, 8)[0]
    par = run_on_cpu_ranks(grpo_update_shared, 4, hf, 2, 2, True)
    assert rows["loss"] != 0.0 and rows["logprob_diff"] > 0.0
    for key in ("loss", "grad_norm", "logprob_diff", "after"):
        assert shared[key] == pytest.approx(rows[key], rel=1e-5, abs=1e-6), key
        assert two_groups_padded[key] == pytest.approx(rows[key], rel=1e-5, abs=1e-6), key
    for r in par:
        for key in ("loss", "grad_norm", "logprob_diff"):
            assert r[key] == pytest.approx(rows[key], rel=1e-5, abs=1e-6), key
    last = [r for r in par if r["after"] is not None]
    assert last and last[0]["after"] == pytest.approx(rows["after"], rel=1e-5)


@pytest.fixture(scope="module")
def cases(tmp_path_factory):
    from grpo_parallel_ranks import skip_and_kl_cases

    hf = str(make_tiny("llama", tmp_path_factory.mktemp("tiny") / "llama"))
    return run_on_cpu_ranks(skip_and_kl_cases, 1, hf)[0]


@pytest.mark.multiproc
def test_skipping_zero_advantage_groups_gives_the_same_step(cases):
    """Group 2 has equal rewards (advantage 0): skipping its forward/backward leaves the loss, grad
    norm and updated weights as training all three groups. (The choice of groups depends on the
    batch only, so every rank of a TP x PP replica makes the same one.)"""
    full, skip = cases["full"][0], cases["skip"][0]
    assert full["trained_frac"] == 1.0 and skip["trained_frac"] == pytest.approx(2 / 3)
    assert full["loss"] != 0.0 and full["grad_norm"] > 0.0
    for key in ("loss", "grad_norm", "after"):
        assert skip[key] == pytest.approx(full[key], rel=1e-5, abs=1e-7), key
    # no group with signal: one (the shortest) still runs, so ranks and the optimizer step as usual
    none = cases["none"][0]
    assert none["trained_frac"] == pytest.approx(1 / 3) and none["loss"] == 0.0 and none["grad_norm"] == 0.0


@pytest.mark.multiproc
def test_beta_adds_the_kl_to_the_reference_model(cases):
    """beta > 0 builds a frozen reference model (the initial weights); beta = 0 builds none. Step 1:
    the policy is the reference, so KL = 0 and its gradient too (same step as beta = 0). Step 2: the
    policy moved, KL > 0, and the loss is the beta = 0 loss + beta * KL (dapo, no IS weights)."""
    plain, kl = cases["beta0"], cases["beta"]
    assert kl[-1]["has_ref"] and not plain[-1]["has_ref"]
    assert kl[0]["kl"] < 1e-9 and kl[0]["loss"] == pytest.approx(plain[0]["loss"], abs=1e-7)
    assert kl[0]["grad_norm"] == pytest.approx(plain[0]["grad_norm"], rel=1e-5)
    assert kl[1]["kl"] > 1e-6
    assert kl[1]["loss"] == pytest.approx(plain[1]["loss"] + 0.5 * kl[1]["kl"], rel=1e-4, abs=1e-8)


@pytest.mark.multiproc
def test_bf16_policy_tracks_fp32_and_refits_the_engine_dtype(tmp_path):
    """bf16 weights with fp32 main params (the GPU recipe's precision) on CPU: three GRPO steps on the
    same rollouts track the fp32 losses, and a refit casts the bf16 weights to the CPU engine's fp32."""
    from grpo_parallel_ranks import grpo_precision_steps

    hf = str(make_tiny("llama", tmp_path / "llama"))
    fp32 = run_on_cpu_ranks(grpo_precision_steps, 1, hf, "float32")[0]
    bf16 = run_on_cpu_ranks(grpo_precision_steps, 1, hf, "bfloat16")[0]
    assert fp32["losses"][0] != fp32["losses"][-1]  # the steps move the policy
    for a, b in zip(fp32["losses"], bf16["losses"], strict=True):
        assert b == pytest.approx(a, abs=0.01 * max(abs(a), 0.1))  # measured: within 0.3%
    assert bf16["main_params"] == ["torch.float32"] and fp32["main_params"] == ["torch.float32"]
    assert "torch.bfloat16" in bf16["sent"] and fp32["sent"] == ["torch.float32"]
    assert bf16["received"] == ["torch.float32"]  # the CPU engine runs fp32 (bf16 logprobs are far off there)


@pytest.mark.multiproc
def test_mu_2_clips_once_the_weights_have_moved(tmp_path):
    from grpo_parallel_ranks import grpo_mu_clip

    hf = str(make_tiny("llama", tmp_path / "llama"))
    it = run_on_cpu_ranks(grpo_mu_clip, 1, hf, 5e-2)[0]["iterations"]
    assert len(it) == 2
    assert it[0]["clip_frac"] == 0.0  # old logprobs recomputed before the first iteration: ratio 1
    assert it[1]["clip_frac"] > 0.0   # the second iteration sees the moved policy through the clip


@pytest.mark.multiproc
@pytest.mark.parametrize("loss_type", ["dapo", "grpo"])
def test_dp2_step_equals_the_dp1_shortcut(tmp_path, loss_type):
    """The loop's global counts: DP=1 takes no collective, DP=2 all-reduces them; with the batch split
    unevenly over two replicas the update equals one replica training all of it."""
    from grpo_parallel_ranks import grpo_dp_update

    hf = str(make_tiny("llama", tmp_path / "llama"))
    one = run_on_cpu_ranks(grpo_dp_update, 1, hf, loss_type)[0]
    two = run_on_cpu_ranks(grpo_dp_update, 2, hf, loss_type)
    assert one["dp"] == 1 and {r["dp"] for r in two} == {2}
    for r in two:  # both replicas divide by the whole step's counts, not their own
        assert (r["tokens"], r["seqs"]) == (one["tokens"], 12.0)
        assert r["grad_norm"] == pytest.approx(one["grad_norm"], rel=1e-5)
        assert r["after"] == pytest.approx(one["after"], rel=1e-5)
    assert one["grad_norm"] > 0 and abs(one["after"] - one["before"]) > 1e-3  # the step moved the weights


@pytest.mark.multiproc
@pytest.mark.parametrize("distributed", [True, False])
def test_checkpoint_saved_before_any_step_resumes_exactly(tmp_path, distributed):
    """The distributed optimizer has no Adam state before its first step, and the plain one saves no
    'step' while it is 0; saving then must still work (a GRPO run can save before any group trained)
    and the resumed step must equal a fresh one."""
    from grpo_parallel_ranks import save_before_training

    hf = str(make_tiny("llama", tmp_path / "llama"))
    r = run_on_cpu_ranks(save_before_training, 1, hf, str(tmp_path / "ckpt"), distributed)[0]
    assert r["loaded_step"] == 0 and r["fresh"][1] > 0
    assert r["resumed"] == r["fresh"]  # bit-exact: zero moments at step 0 are what a first step creates
    assert r["children_after_save"] == []
    saved, other = str(distributed).lower(), str(not distributed).lower()
    assert (f"saved with optim.distributed_optimizer={saved}, this run has optim.distributed_optimizer={other}"
            in r["other_kind_error"])
