"""Rank function for the GRPO layout-parity test (a uniquely named module: spawned ranks import it)."""

from __future__ import annotations

import torch


def fixed_rollouts(vocab: int, seed: int = 0):
    """8 sequences (2 prompts x 4 generations) of uneven lengths with rewards, as a GRPO step sees them."""
    from nemo_r1.algorithms.grpo import compute_advantages
    from nemo_r1.trainers.batching import build_batch

    g = torch.Generator().manual_seed(seed)
    prompts = [torch.randint(0, vocab, (5,), generator=g).tolist() for _ in range(2) for _ in range(4)]
    comps = [torch.randint(0, vocab, (int(torch.randint(2, 7, (1,), generator=g)),), generator=g).tolist()
             for _ in range(8)]
    rollout_lp = [(-torch.rand(len(c), generator=g) * 5).tolist() for c in comps]
    rewards = torch.tensor([1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0])
    return build_batch(prompts, comps, rollout_lp, compute_advantages(rewards, 4), pad_id=0)


def grpo_update(hf_dir: str, tp: int, pp: int, skip_prompt: bool = True) -> dict[str, float]:
    """One GRPO optimizer step from fixed rollouts at TP x PP; returns loss and grad norm.

    skip_prompt=False computes the vocab projection on every position (logprob_start = 0).
    """
    import dataclasses

    from nemo_r1.trainers.batching import TrainBatch

    class FullBatch(TrainBatch):
        logprob_start = 0  # shadows the property
    from nemo_r1.config import load_config
    from nemo_r1.trainers.batching import micro_batches
    from nemo_r1.trainers.grpo_step import make_loss_fn
    from nemo_r1.trainers.megatron_policy import build_policy

    cfg = load_config(None, [f"parallel.tensor={tp}", f"parallel.pipeline={pp}", "optim.lr=1e-3", "train.max_steps=1",
                             "grpo.loss_type=dapo", "grpo.tis_cap=2.0", "rollout.temperature=1.0"])
    policy = build_policy(cfg, hf_dir)
    batch = fixed_rollouts(300)
    mbs = [batch.select(ix).trim() for ix in micro_batches(batch.lengths, 2)]
    if not skip_prompt:
        mbs = [FullBatch(*(getattr(mb, f.name) for f in dataclasses.fields(mb))) for mb in mbs]
    assert skip_prompt == all(mb.logprob_start > 0 for mb in mbs)
    loss_fn = make_loss_fn(cfg, float(batch.mask.sum()), float(len(batch.lengths)), 8)
    stats = policy.train_step(mbs, loss_fn)
    lp = policy.logprobs(batch, 4)  # a collective: every rank runs the pipeline, the last stage gets values
    after = float((lp * batch.mask).sum()) if lp is not None else None
    return {"loss": stats["loss"], "grad_norm": stats["grad_norm"], "logprob_diff": stats["logprob_diff"],
            "after": after}


def group_rollouts(vocab: int, seed: int = 1):
    """2 groups x 4 generations, each group with one prompt (lengths 5 and 8), uneven completions."""
    from nemo_r1.algorithms.grpo import compute_advantages
    from nemo_r1.trainers.batching import build_batch

    g = torch.Generator().manual_seed(seed)
    heads = [torch.randint(0, vocab, (n,), generator=g).tolist() for n in (5, 8)]
    prompts = [heads[i // 4] for i in range(8)]
    lens = [3, 1, 6, 4, 2, 5, 5, 7]
    comps = [torch.randint(0, vocab, (n,), generator=g).tolist() for n in lens]
    rollout_lp = [(-torch.rand(len(c), generator=g) * 5).tolist() for c in comps]
    rewards = torch.tensor([1.0, 0.0, 0.0, 1.0, 0.0, 1.0, 0.0, 1.0])
    return build_batch(prompts, comps, rollout_lp, compute_advantages(rewards, 4), pad_id=0)


def grpo_update_shared(hf_dir: str, tp: int, pp: int, share: bool, micro: int = 4) -> dict[str, float]:
    """One GRPO step on `group_rollouts`, each group packed into one row (share) or one row per sample;
    micro=8 puts both groups' rows in one micro-batch, the shorter one padded."""
    from nemo_r1.config import load_config
    from nemo_r1.trainers.batching import micro_batches
    from nemo_r1.trainers.grpo_step import make_loss_fn
    from nemo_r1.trainers.megatron_policy import build_policy
    from nemo_r1.trainers.shared_prompt import groups_share_prompts, shared_prompt_micro_batches

    cfg = load_config(None, [f"parallel.tensor={tp}", f"parallel.pipeline={pp}", "optim.lr=1e-3", "train.max_steps=1",
                             "grpo.loss_type=grpo", "grpo.tis_cap=2.0", "rollout.temperature=0.7"])
    policy = build_policy(cfg, hf_dir)
    batch = group_rollouts(300)
    assert groups_share_prompts(batch, 4)
    if share:
        mbs = shared_prompt_micro_batches(batch, 4, micro)
        # the prompt once per group; with micro=8 both groups in one micro-batch, padded to the longer
        want = [(1, 8 + 19), (1, 5 + 14)] if micro == 4 else [(2, 8 + 19)]
        assert [tuple(mb.tokens.shape) for mb in mbs] == want
    else:
        mbs = [batch.select(ix).trim() for ix in micro_batches(batch.lengths, 4)]
    loss_fn = make_loss_fn(cfg, float(batch.mask.sum()), float(len(batch.lengths)), 8)
    stats = policy.train_step(mbs, loss_fn)
    lp = policy.logprobs(batch, 4)
    after = float((lp * batch.mask).sum()) if lp is not None else None
    return {"loss": stats["loss"], "grad_norm": stats["grad_norm"], "logprob_diff": stats["logprob_diff"],
            "after": after}


def three_groups(vocab: int, rewards: list[float], seed: int = 2):
    """3 groups x 4 generations with their own prompts; `rewards` decides which groups carry signal."""
    from nemo_r1.algorithms.grpo import compute_advantages
    from nemo_r1.trainers.batching import build_batch

    g = torch.Generator().manual_seed(seed)
    heads = [torch.randint(0, vocab, (n,), generator=g).tolist() for n in (5, 8, 6)]
    prompts = [heads[i // 4] for i in range(12)]
    lens = [3, 1, 6, 4, 2, 5, 5, 7, 4, 4, 2, 6]
    comps = [torch.randint(0, vocab, (n,), generator=g).tolist() for n in lens]
    rollout_lp = [(-torch.rand(len(c), generator=g) * 5).tolist() for c in comps]
    return build_batch(prompts, comps, rollout_lp, compute_advantages(torch.tensor(rewards), 4), pad_id=0)


def _train_on(hf_dir: str, overrides: list[str], rewards: list[float], steps: int = 1) -> list[dict[str, float]]:
    """`steps` GRPO steps through `train_on_batch` (the trainer's entry point) on `three_groups`, from
    a fresh policy; per step: loss, KL, grad norm, trained fraction, and (last step) the whole batch's
    logprob sum after the update."""
    from nemo_r1.config import load_config
    from nemo_r1.trainers.grpo_step import train_on_batch
    from nemo_r1.trainers.megatron_policy import build_policy

    cfg = load_config(None, ["optim.lr=1e-2", "optim.warmup_steps=0", f"train.max_steps={steps}",
                             "grpo.loss_type=dapo", "rollout.temperature=1.0", "grpo.num_generations=4",
                             "train.micro_batch_size=4", "rollout.max_new_tokens=8", *overrides])
    policy = build_policy(cfg, hf_dir)
    batch = three_groups(300, rewards)
    out = []
    for _ in range(steps):
        stats = train_on_batch(cfg, policy, batch, float(batch.mask.sum()), float(len(batch.lengths)))
        out.append({"loss": stats["loss"], "kl": stats.get("kl", 0.0), "grad_norm": stats["grad_norm"],
                    "trained_frac": stats["trained_frac"]})
    out[-1]["after"] = float((policy.logprobs(batch, 4) * batch.mask).sum())
    out[-1]["has_ref"] = policy.ref_model is not None
    return out


SIGNAL = [1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0, 1.0, 0.0, 0.0]  # group 2: equal rewards


def skip_and_kl_cases(hf_dir: str) -> dict[str, list[dict[str, float]]]:
    """One rank, several fresh policies: zero-advantage skipping on/off/no-signal, and beta 0 vs 0.5."""
    return {
        "full": _train_on(hf_dir, ["grpo.skip_zero_advantage=false", "grpo.tis_cap=2.0"], SIGNAL),
        "skip": _train_on(hf_dir, ["grpo.skip_zero_advantage=true", "grpo.tis_cap=2.0"], SIGNAL),
        "none": _train_on(hf_dir, ["grpo.skip_zero_advantage=true"], [1.0] * 4 + [0.0] * 8),
        "beta0": _train_on(hf_dir, ["grpo.beta=0.0", "grpo.tis_cap=null"], SIGNAL, steps=2),
        "beta": _train_on(hf_dir, ["grpo.beta=0.5", "grpo.tis_cap=null"], SIGNAL, steps=2),
    }


def grpo_precision_steps(hf_dir: str, dtype: str, steps: int = 3) -> dict:
    """`steps` GRPO optimizer steps on the same fixed rollouts with model.dtype=`dtype`; the losses,
    the optimizer's main-param dtype, and the dtypes a refit sends and the CPU engine receives."""
    from nemo_r1.config import load_config
    from nemo_r1.rollout.refit import RefitStats, stream
    from nemo_r1.trainers.batching import micro_batches
    from nemo_r1.trainers.grpo_step import make_loss_fn
    from nemo_r1.trainers.megatron_policy import build_policy

    cfg = load_config(None, [f"model.dtype={dtype}", "optim.lr=1e-3", f"train.max_steps={steps}",
                             "grpo.loss_type=dapo", "grpo.tis_cap=2.0", "rollout.temperature=1.0"])
    policy = build_policy(cfg, hf_dir)
    batch = fixed_rollouts(300)
    mbs = [batch.select(ix).trim() for ix in micro_batches(batch.lengths, 4)]
    loss_fn = make_loss_fn(cfg, float(batch.mask.sum()), float(len(batch.lengths)), 8)
    losses = [policy.train_step(mbs, loss_fn)["loss"] for _ in range(steps)]
    opt = policy.state.optimizer
    inner = getattr(opt, "chained_optimizers", [opt])[0]
    main = {str(p.dtype) for g in inner.optimizer.param_groups for p in g["params"]}
    sent = {str(t.dtype) for _, t in policy.hf_weights()}
    received = {str(t.dtype) for _, t in stream(policy.hf_weights(), torch.float32, RefitStats())}
    return {"losses": losses, "main_params": sorted(main), "sent": sorted(sent), "received": sorted(received)}


def grpo_mu_clip(hf_dir: str, lr: float) -> dict:
    """Two policy iterations on one batch of rollouts (grpo.mu=2) through Megatron: the first starts
    at ratio 1; after one step the ratios move and the clipped surrogate starts clipping."""
    from nemo_r1.config import load_config
    from nemo_r1.trainers.grpo_step import train_on_batch
    from nemo_r1.trainers.megatron_policy import build_policy

    cfg = load_config(None, [f"optim.lr={lr}", "grpo.mu=2", "grpo.loss_type=dapo", "grpo.tis_cap=null",
                             "grpo.skip_zero_advantage=false", "rollout.temperature=1.0", "train.micro_batch_size=4"])
    policy = build_policy(cfg, hf_dir)
    batch = fixed_rollouts(300)
    seen: list[dict] = []
    step = policy.train_step

    def recording(mbs, loss_fn):
        stats = step(mbs, loss_fn)
        seen.append({k: stats[k] for k in ("loss", "clip_frac")})
        return stats

    policy.train_step = recording
    train_on_batch(cfg, policy, batch, float(batch.mask.sum()), float(len(batch.lengths)))
    return {"iterations": seen}


def grpo_dp_update(hf_dir: str, loss_type: str) -> dict:
    """One GRPO step on `three_groups` at TP1: DP=1 trains all 3 groups on one rank (no collective for
    the counts); DP=2 gives rank 0 groups 0-1 and rank 1 group 2 (uneven: 2 and 1 micro-batches),
    with the global counts all-reduced as the loop does. Returns the step statistics and the whole
    batch's logprob sum after the update."""
    import torch.distributed as dist
    from megatron.core import parallel_state as ps

    from nemo_r1.config import load_config
    from nemo_r1.trainers.grpo_step import global_counts, train_on_batch
    from nemo_r1.trainers.megatron_policy import build_policy

    cfg = load_config(None, ["optim.lr=1e-2", "train.max_steps=1", f"grpo.loss_type={loss_type}",
                             "rollout.temperature=1.0", "grpo.num_generations=4", "train.micro_batch_size=4",
                             "rollout.max_new_tokens=8", "grpo.skip_zero_advantage=false", "grpo.tis_cap=2.0"])
    policy = build_policy(cfg, hf_dir)
    full = three_groups(300, SIGNAL)
    dp = ps.get_data_parallel_world_size()
    mine = list(range(12)) if dp == 1 else (list(range(8)) if dist.get_rank() == 0 else list(range(8, 12)))
    batch = full.select(mine)
    before = float((policy.logprobs(full, 4) * full.mask).sum())
    tokens, seqs = global_counts(batch, len(mine), ps.get_data_parallel_group() if dp > 1 else None)
    stats = train_on_batch(cfg, policy, batch, tokens, seqs)
    return {"dp": dp, "tokens": tokens, "seqs": seqs, "loss": stats["loss"], "grad_norm": stats["grad_norm"],
            "before": before, "after": float((policy.logprobs(full, 4) * full.mask).sum())}


def save_before_training(hf_dir: str, out: str, distributed: bool = True) -> dict:
    """A checkpoint saved before any optimizer step (a GRPO run whose first steps had no informative
    group) loads, and the next step equals a fresh policy's first step; with the distributed or the
    plain optimizer (`optim.distributed_optimizer`)."""
    import psutil

    from nemo_r1.config import load_config
    from nemo_r1.trainers.batching import micro_batches
    from nemo_r1.trainers.grpo_step import make_loss_fn
    from nemo_r1.trainers.megatron_policy import build_policy

    cfg = load_config(None, ["optim.lr=1e-3", "train.max_steps=2", "grpo.loss_type=dapo", "rollout.temperature=1.0",
                             f"optim.distributed_optimizer={distributed}"])
    batch = fixed_rollouts(300)
    mbs = [batch.select(ix).trim() for ix in micro_batches(batch.lengths, 4)]
    loss_fn = make_loss_fn(cfg, float(batch.mask.sum()), float(len(batch.lengths)), 8)
    result = {}
    for name in ("fresh", "resumed"):
        policy = build_policy(cfg, hf_dir)
        if name == "resumed":
            policy.save(out, {"step": 0})
            # megatron's writer processes are gone after a save (and no results Manager stays behind)
            result["children_after_save"] = [" ".join(c.cmdline())[-60:] for c in psutil.Process().children()]
            other = load_config(None, ["train.max_steps=2", f"optim.distributed_optimizer={not distributed}"])
            try:
                build_policy(other, hf_dir).load(out)
            except ValueError as e:  # the other optimizer's layout: refused, naming the key
                result["other_kind_error"] = str(e)
            policy = build_policy(cfg, hf_dir)
            result["loaded_step"] = int(policy.load(out)["step"])
        stats = policy.train_step(mbs, loss_fn)
        result[name] = [stats["loss"], stats["grad_norm"], float((policy.logprobs(batch, 4) * batch.mask).sum())]
    return result


def golden_steps(hf_dir: str, tp: int, pp: int, steps: int = 3) -> dict:
    """`steps` GRPO optimizer steps on the fixed rollouts at TP x PP: per step loss and grad norm
    (test_golden.py pins them; rank 0 reports)."""
    import torch.distributed as dist

    from nemo_r1.config import load_config
    from nemo_r1.trainers.grpo_step import train_on_batch
    from nemo_r1.trainers.megatron_policy import build_policy

    cfg = load_config(None, [f"parallel.tensor={tp}", f"parallel.pipeline={pp}", "optim.lr=1e-3",
                             f"train.max_steps={steps}", "grpo.loss_type=dapo", "grpo.tis_cap=2.0",
                             "rollout.temperature=1.0", "grpo.num_generations=4", "train.micro_batch_size=2",
                             "grpo.skip_zero_advantage=false"])
    policy = build_policy(cfg, hf_dir)
    batch = fixed_rollouts(300)
    out = {"loss": [], "grad_norm": []}
    for _ in range(steps):
        stats = train_on_batch(cfg, policy, batch, float(batch.mask.sum()), float(len(batch.lengths)))
        out["loss"].append(stats["loss"])
        out["grad_norm"].append(stats["grad_norm"])
    return out if dist.get_rank() == 0 else {}
