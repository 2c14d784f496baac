"""One GRPO step's pieces, each testable without a model: the prompts of a step, rewards of its
rollouts, advantages and the padded batch, the loss closure, the policy update and the metrics.

`grpo_run.run_grpo` is the loop that calls them; `grpo.main` is the command.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import torch

from nemo_r1.algorithms.grpo import compute_advantages, policy_loss
from nemo_r1.algorithms.loss_variants import LOSS_VARIANTS
from nemo_r1.config import Config
from nemo_r1.trainers.batching import TrainBatch, build_batch, informative_groups, micro_batches
from nemo_r1.trainers.lifecycle import step_seed
from nemo_r1.trainers.policy import Policy


class PromptSampler:
    """Epoch-wise shuffled prompt order, addressable by step (no iterator state to checkpoint)."""

    def __init__(self, n_rows: int, seed: int) -> None:
        if n_rows < 1:
            raise ValueError("the training set has no rows")
        self.n, self.seed = n_rows, seed
        self._perm: dict[int, list[int]] = {}

    def index(self, position: int) -> int:
        epoch, offset = divmod(position, self.n)
        if epoch not in self._perm:
            rng = random.Random(step_seed(self.seed, epoch, "epoch"))
            self._perm = {epoch: rng.sample(range(self.n), self.n)}
        return self._perm[epoch][offset]

    def for_step(self, step: int, per_step: int, replica: int, replicas: int, refill: int = 0) -> list[int]:
        """This replica's prompts for `step` (refill > 0: extra prompts for dynamic sampling)."""
        local = per_step // replicas
        if refill:
            rng = random.Random(step_seed(self.seed, step, f"refill{refill}/{replica}"))
            return [rng.randrange(self.n) for _ in range(local)]
        start = step * per_step + replica * local
        return [self.index(start + j) for j in range(local)]


def score_rollouts(rows: list[dict[str, Any]], rollouts: list, group_size: int,
                   reward_fn) -> tuple[torch.Tensor, torch.Tensor, dict[str, list[float | None]]]:
    """Rewards of one replica's rollouts: (total with None filled by the group mean, valid mask, per name).
    The fill only keeps "are this group's rewards all equal" honest; advantages take their
    statistics over the valid samples alone (`compute_advantages(valid=...)`)."""
    completions = [r.text for r in rollouts]
    columns: dict[str, list[Any]] = {}
    for key in rows[0]:
        if key not in ("prompt_messages",):
            columns[key] = [rows[r.prompt_index][key] for r in rollouts]
    columns["completion_lengths"] = [len(r.completion_token_ids) for r in rollouts]
    columns["group_ids"] = [r.prompt_index for r in rollouts]
    total, per_name = reward_fn(completions, **columns)
    valid = torch.tensor([t is not None for t in total])
    values = torch.tensor([t if t is not None else 0.0 for t in total], dtype=torch.float32)
    # an unscorable sample gets its group's mean, no advantage and no loss
    g = values.view(-1, group_size)
    v = valid.view(-1, group_size).float()
    means = (g * v).sum(1, keepdim=True) / v.sum(1, keepdim=True).clamp(min=1)
    values = torch.where(valid.view(-1, group_size), g, means).view(-1)
    return values, valid, per_name


def score_on_replica(rows: list[dict[str, Any]], rollouts: list, group_size: int, reward_fn,
                     group: Any) -> tuple[torch.Tensor, torch.Tensor, dict[str, list[float | None]]]:
    """`score_rollouts` on the replica's first rank, broadcast to its other ranks. Rewards with
    wall-clock limits (math-verify's timeout, the sandbox) could otherwise differ between the ranks
    of one replica, which would then build different batches and skip different groups."""
    import torch.distributed as dist

    if group is None or dist.get_world_size(group) == 1:
        return score_rollouts(rows, rollouts, group_size, reward_fn)
    leader = dist.get_process_group_ranks(group)[0]
    box = [score_rollouts(rows, rollouts, group_size, reward_fn) if dist.get_rank() == leader else None]
    dist.broadcast_object_list(box, src=leader, group=group)
    return box[0]


def make_loss_fn(cfg: Config, num_tokens: float, num_sequences: float, max_len: int,
                 num_micro_batches: float | None = None):
    """The closure the policy calls per micro-batch (on the last pipeline stage)."""
    g = cfg.grpo

    def loss_fn(logprobs: torch.Tensor, mb: TrainBatch):
        # mu == 1: the policy has not moved since the rollout, so its own (detached) logprobs are the
        # old ones and no separate forward pass is needed
        old_lp = mb.old_logprobs if mb.old_logprobs is not None else logprobs.detach()
        return policy_loss(logprobs, old_lp, mb.advantages, mb.mask, loss_type=g.loss_type, eps_low=g.eps_low,
                           eps_high=g.eps_high, beta=g.beta, ref_logprobs=mb.ref_logprobs, max_completion_length=max_len,
                           dual_clip=g.dual_clip, rollout_logprobs=mb.rollout_logprobs if g.tis_cap else None,
                           tis_cap=g.tis_cap, num_tokens=num_tokens, num_sequences=num_sequences,
                           num_micro_batches=num_micro_batches)

    return loss_fn


def build_train_batch(cfg: Config, rollouts: list, rewards: torch.Tensor, valid: torch.Tensor,
                      pad_id: int) -> TrainBatch:
    """Advantages from rewards, then the padded batch with overlong/unscorable sequences masked."""
    adv = compute_advantages(rewards, cfg.grpo.num_generations, scale=cfg.grpo.advantage_scale,
                             leave_one_out=cfg.grpo.leave_one_out, valid=valid)
    keep = [bool(v) and not (cfg.grpo.overlong_filter and r.truncated) for r, v in zip(rollouts, valid, strict=True)]
    return build_batch([r.prompt_token_ids for r in rollouts], [r.completion_token_ids for r in rollouts],
                       [r.logprobs for r in rollouts], adv, pad_id=pad_id, completion_mask=keep)


def select_groups(rollouts: list, rewards: torch.Tensor, valid: torch.Tensor, group_size: int,
                  keep_groups: torch.Tensor) -> tuple[list, torch.Tensor, torch.Tensor]:
    """Keep whole groups (for dynamic sampling)."""
    idx = [i for i in range(len(rollouts)) if keep_groups[i // group_size]]
    return [rollouts[i] for i in idx], rewards[idx], valid[idx]


def rollout_metrics(rollouts: list, seconds: float) -> dict[str, float]:
    lengths = [len(r.completion_token_ids) for r in rollouts]
    return {
        "rollout/tokens_per_s": sum(lengths) / max(seconds, 1e-9),
        "rollout/mean_length": sum(lengths) / max(len(lengths), 1),
        "rollout/truncated_frac": sum(r.truncated for r in rollouts) / max(len(rollouts), 1),
    }


def reward_metrics(rewards: torch.Tensor, valid: torch.Tensor, per_name: dict[str, list[float | None]],
                   group_size: int) -> dict[str, float]:
    m: dict[str, float] = {}
    v = valid.bool()
    m["reward/mean"] = float(rewards[v].mean()) if v.any() else float("nan")
    m["reward/unscored"] = float((~v).sum())
    for name, vals in per_name.items():
        ok = [x for x in vals if x is not None]
        m[f"reward/{name}"] = sum(ok) / len(ok) if ok else float("nan")
    m["reward/informative_groups_frac"] = float(informative_groups(rewards, group_size).float().mean())
    return m


def write_samples(path: Path, step: int, rows: list[dict[str, Any]], rollouts: list, rewards: torch.Tensor,
                  limit: int = 8) -> None:
    from nemo_r1.trainers.lifecycle import SampleLog

    SampleLog(path, resume_step=step - 1).write(step, [
        {"prompt": rows[r.prompt_index].get("prompt"), "answer": rows[r.prompt_index].get("answer"),
         "completion": r.text, "reward": float(rewards[i]), "finish_reason": r.finish_reason}
        for i, r in enumerate(rollouts[:limit])])


def groups_with_gradient(batch: TrainBatch, group_size: int) -> list[int]:
    """Indices of the samples in groups where some sample has a nonzero advantage and loss tokens.

    At least one group is kept (the shortest), so every rank still runs the same schedule and
    collectives, and the optimizer still steps (Adam moves on its moments even with a zero grad).
    """
    B = batch.tokens.shape[0]
    if B % group_size:
        return list(range(B))
    live = (batch.advantages != 0) & (batch.mask.sum(dim=1) > 0)
    groups = live.view(-1, group_size).any(dim=1)
    if not bool(groups.any()):
        sizes = batch.lengths.view(-1, group_size).sum(dim=1)
        groups[int(torch.argmin(sizes))] = True
    return [i for i in range(B) if groups[i // group_size]]


def can_skip_zero_advantage(cfg: Config) -> bool:
    """Skipping is exact only when a zero-advantage sample adds nothing to the loss's gradient *and*
    its normaliser: no KL term, and a loss variant normalised by counts over the whole batch (one
    that divides by the tokens of each micro-batch would rescale the others)."""
    g = cfg.grpo
    return g.skip_zero_advantage and g.beta == 0 and LOSS_VARIANTS[g.loss_type].global_counts


def global_micro_batches(local: int) -> float:
    """Micro-batches of this step summed over the data-parallel ranks (one all-reduce when DP > 1)."""
    import torch.distributed as dist
    from megatron.core import parallel_state as ps

    if not (dist.is_initialized() and ps.model_parallel_is_initialized()) or ps.get_data_parallel_world_size() == 1:
        return float(local)
    t = torch.tensor([float(local)])
    dist.all_reduce(t, group=ps.get_data_parallel_group())
    return float(t)


def global_counts(batch: TrainBatch, num_sequences: int, dp_group: Any = None) -> tuple[float, float]:
    """(loss tokens, sequences) of the step summed over the data-parallel replicas: the global
    normalisers every replica's loss divides by. DP = 1 (or no group) takes no collective."""
    import torch.distributed as dist

    counts = torch.tensor([float(batch.mask.sum()), float(num_sequences)])
    if dp_group is not None and dist.get_world_size(dp_group) > 1:
        dist.all_reduce(counts, group=dp_group)
    return float(counts[0]), float(counts[1])


def train_on_batch(cfg: Config, policy: Policy, batch: TrainBatch, num_tokens: float, num_sequences: float
                   ) -> dict[str, float]:
    """mu policy iterations over one batch of rollouts (old logprobs recomputed only when mu > 1).

    `num_tokens` / `num_sequences` are the global counts of the whole batch (all DP ranks), so the
    loss of the groups trained here is normalised as if every group were."""
    total = batch.tokens.shape[0]
    if can_skip_zero_advantage(cfg):
        keep = groups_with_gradient(batch, cfg.grpo.num_generations)
        if len(keep) < total:
            batch = batch.select(keep)
    if cfg.grpo.mu > 1:
        batch.old_logprobs = policy.logprobs(batch, cfg.train.micro_batch_size)
    if cfg.grpo.beta > 0:
        batch.ref_logprobs = policy.ref_logprobs(batch, cfg.train.micro_batch_size)
    from nemo_r1.platform import cuda_available
    from nemo_r1.trainers.shared_prompt import groups_share_prompts, shared_prompt_micro_batches

    G = cfg.grpo.num_generations
    # GPU layer specs use transformer-engine attention, which these block masks do not reach yet
    if cfg.grpo.share_prompt and not cuda_available() and groups_share_prompts(batch, G):
        mbs: list = shared_prompt_micro_batches(batch, G, cfg.train.micro_batch_size)
    else:
        mbs = [batch.select(ix).trim() for ix in micro_batches(batch.lengths, cfg.train.micro_batch_size)]
    loss_fn = make_loss_fn(cfg, num_tokens, num_sequences, cfg.rollout.max_new_tokens,
                           global_micro_batches(len(mbs)) if cfg.grpo.loss_type == "bnpo" else None)
    first: dict[str, float] = {}
    for it in range(cfg.grpo.mu):
        stats = policy.train_step(mbs, loss_fn)
        first = stats if it == 0 else {**first, "grad_norm": stats["grad_norm"], "lr": stats["lr"]}
    first["trained_frac"] = batch.tokens.shape[0] / max(total, 1)
    return first
