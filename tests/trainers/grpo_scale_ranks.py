"""Rank function of test_grpo_scale.py: one GRPO step of the real loop at TP2 x DP2 (4 CPU ranks)
with dynamic sampling, where replica 1's groups all score the same and every rank's reward
function disagrees with its TP peer's. Imported by spawned ranks, hence a uniquely named module."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _config(model_dir: str, out: str, tensor: int):
    from nemo_r1.config import RewardSpec, load_config

    cfg = load_config(ROOT / "configs/grpo/demo.yaml", [
        f"output_dir={out}", f"model.path={model_dir}", f"parallel.tensor={tensor}", "train.max_steps=1",
        "rollout.max_new_tokens=8", "grpo.prompts_per_step=2", "grpo.num_generations=2", "grpo.dynamic_sampling=true",
        "grpo.max_refill_rounds=0", "train.micro_batch_size=2", "checkpoint.every=0", "checkpoint.save_final=false",
        "logging.tensorboard=false", "data.max_samples=4", "rollout.kv_cache_gib=0.125"])
    cfg.rewards = [RewardSpec(name="rank_probe")]
    return cfg


def grpo_dp_step(model_dir: str, out: str) -> dict:
    import torch
    import torch.distributed as dist

    import nemo_r1.trainers.grpo_run as loop
    from nemo_r1.rewards import REWARDS

    def rank_probe(completions, params, **columns):
        """Replica 0: rewards vary within each group; replica 1: all equal (nothing to learn). Each
        rank adds 0.001 x its own rank: only the replica leader's values may reach the batch."""
        rank = dist.get_rank()
        if rank // 2 == 1:  # TP fastest: ranks 2, 3 form replica 1
            return [0.0] * len(completions)
        return [float(i % 2) + 0.001 * rank for i in range(len(completions))]

    REWARDS.add("rank_probe", rank_probe)
    cfg = _config(model_dir, out, 2)
    seen: list[dict] = []
    build = loop.build_train_batch

    def recording_build(cfg_, rollouts, rewards, valid, pad_id):
        batch = build(cfg_, rollouts, rewards, valid, pad_id)
        seen.append({"rewards": rewards.tolist(), "advantages": batch.advantages.tolist(),
                     "loss_tokens": float(batch.mask.sum())})
        if dist.get_rank() == 0:  # replica 0's batch, for the reference step
            torch.save(batch, Path(out) / "replica0_batch.pt")
        return batch

    loop.build_train_batch = recording_build
    rows = loop.run_grpo(cfg)
    return {"rank": dist.get_rank(), "batches": seen, "rows": rows}


def reference_step(model_dir: str, out: str, batch_file: str, num_sequences: int) -> dict:
    """The same update computed directly: one rank (TP1, DP1) trains replica 0's batch with the
    step's global counts (replica 1 contributed no tokens and no sequences)."""
    import torch

    from nemo_r1.trainers.grpo_step import train_on_batch
    from nemo_r1.trainers.megatron_policy import build_policy

    cfg = _config(model_dir, out, 1)
    policy = build_policy(cfg, model_dir)
    batch = torch.load(batch_file, weights_only=False)
    stats = train_on_batch(cfg, policy, batch, float(batch.mask.sum()), float(num_sequences))
    return {"loss": stats["loss"], "grad_norm": stats["grad_norm"]}
