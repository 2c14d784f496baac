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
    from nemo_r1.trainers.grpo import make_loss_fn
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


def grpo_update_shared(hf_dir: str, tp: int, pp: int, share: bool) -> dict[str, float]:
    """One GRPO step on `group_rollouts`, each group packed into one row (share) or one row per sample."""
    from nemo_r1.config import load_config
    from nemo_r1.trainers.batching import micro_batches
    from nemo_r1.trainers.grpo import make_loss_fn
    from nemo_r1.trainers.megatron_policy import build_policy
    from nemo_r1.trainers.shared_prompt import groups_share_prompts, shared_prompt_micro_batches

    cfg = load_config(None, [f"parallel.tensor={tp}", f"parallel.pipeline={pp}", "optim.lr=1e-3", "train.max_steps=1",
                             "grpo.loss_type=grpo", "grpo.tis_cap=2.0", "rollout.temperature=0.7"])
    policy = build_policy(cfg, hf_dir)
    batch = group_rollouts(300)
    assert groups_share_prompts(batch, 4)
    if share:
        mbs = shared_prompt_micro_batches(batch, 4, 4)
        assert [tuple(mb.tokens.shape) for mb in mbs] == [(1, 8 + 19), (1, 5 + 14)]  # prompt once per group
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


def grpo_update_skip(hf_dir: str, tp: int, pp: int, skip: bool, rewards: list[float]) -> dict[str, float]:
    """One GRPO step through `train_on_batch` (the trainer's entry point) with zero-advantage
    groups skipped or trained; logprobs of the whole batch afterwards."""
    from nemo_r1.config import load_config
    from nemo_r1.trainers.grpo import train_on_batch
    from nemo_r1.trainers.megatron_policy import build_policy

    cfg = load_config(None, [f"parallel.tensor={tp}", f"parallel.pipeline={pp}", "optim.lr=1e-3", "train.max_steps=1",
                             "grpo.loss_type=dapo", "grpo.tis_cap=2.0", "rollout.temperature=1.0",
                             "grpo.num_generations=4", "train.micro_batch_size=4", "rollout.max_new_tokens=8",
                             f"grpo.skip_zero_advantage={str(skip).lower()}"])
    policy = build_policy(cfg, hf_dir)
    batch = three_groups(300, rewards)
    stats = train_on_batch(cfg, policy, batch, float(batch.mask.sum()), float(len(batch.lengths)))
    lp = policy.logprobs(batch, 4)
    after = float((lp * batch.mask).sum()) if lp is not None else None
    return {"loss": stats["loss"], "grad_norm": stats["grad_norm"], "after": after,
            "trained_frac": stats["trained_frac"]}


def grpo_two_steps_kl(hf_dir: str, beta: float) -> list[dict[str, float]]:
    """Two GRPO steps through `train_on_batch` on the same rollouts, with a KL term of weight beta
    to the reference model (built by build_policy only when beta > 0)."""
    from nemo_r1.config import load_config
    from nemo_r1.trainers.grpo import train_on_batch
    from nemo_r1.trainers.megatron_policy import build_policy

    cfg = load_config(None, ["optim.lr=1e-2", "optim.warmup_steps=0", "train.max_steps=2", "grpo.loss_type=dapo",
                             "grpo.tis_cap=null", "rollout.temperature=1.0", "grpo.num_generations=4",
                             "train.micro_batch_size=4", "rollout.max_new_tokens=8", f"grpo.beta={beta}"])
    policy = build_policy(cfg, hf_dir)
    assert (policy.ref_model is not None) == (beta > 0)
    batch = three_groups(300, [1.0, 0.0, 0.0, 1.0, 1.0, 0.0, 1.0, 1.0, 0.0, 1.0, 0.0, 0.0])
    out = []
    for _ in range(2):
        stats = train_on_batch(cfg, policy, batch, float(batch.mask.sum()), float(len(batch.lengths)))
        out.append({"loss": stats["loss"], "kl": stats.get("kl", 0.0), "grad_norm": stats["grad_norm"]})
    return out
