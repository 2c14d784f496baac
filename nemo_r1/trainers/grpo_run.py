"""The GRPO loop itself: set up ranks, policy, engine, data and rewards; then step until done.

Kept apart from `grpo_step.py` (the per-step pieces, testable without a model) so each file reads
in one sitting. `grpo.py` is the command that runs it and describes the data flow.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from nemo_r1.config import Config, ConfigError, TrainConfig, is_given, save_config, to_dict
from nemo_r1.memory import memory_metrics
from nemo_r1.schedules import apply_schedules
from nemo_r1.signals import StopFlag
from nemo_r1.trainers.grpo_step import (
    PromptSampler,
    build_train_batch,
    global_counts,
    reward_metrics,
    rollout_metrics,
    score_on_replica,
    select_groups,
    train_on_batch,
    write_samples,
)
from nemo_r1.trainers.heldout import heldout_examples, read_results, score_heldout, write_result
from nemo_r1.trainers.lifecycle import (
    any_rank,
    checkpoint_due,
    finish_run,
    prune_checkpoints,
    resume_dir,
    step_seed,
)


def check_model_path(path: str) -> None:
    """Fail in a second, naming the key, rather than after the ranks and imports are up."""
    if path == "embedded:smollm2" or (Path(path) / "config.json").is_file():
        return
    what = "no such directory" if not Path(path).exists() else "no config.json there"
    raise ConfigError(f"model.path={path!r}: {what}; expected a Hugging Face model directory "
                      "(config.json + *.safetensors) or embedded:smollm2")


def resolve_model(path: str) -> str:
    """`embedded:smollm2` -> the cached HF dir (built once, by the first rank)."""
    if path != "embedded:smollm2":
        return path
    from nemo_r1.embedded import ensure_smollm2

    if dist.is_initialized() and dist.get_rank() != 0:
        dist.barrier()
        return str(ensure_smollm2())
    out = str(ensure_smollm2())
    if dist.is_initialized():
        dist.barrier()
    return out


def materialize_data(cfg: Config) -> str:
    """`generated:NAME[:heldout]` -> that split of the generated task, written once under
    output_dir/data (seeded by train.seed, so a rerun or a resume sees the same file); any other
    source is returned unchanged."""
    from nemo_r1.data.tasks import PREFIX, default_rows, parse_source, write_task

    if not cfg.data.train.startswith(PREFIX):
        return cfg.data.train
    try:
        name, split = parse_source(cfg.data.train)
    except ValueError as e:
        raise ConfigError(f"data.train: {e}") from None
    path = Path(cfg.output_dir) / "data" / f"{name}-{split}.jsonl"
    if not dist.is_initialized() or dist.get_rank() == 0:
        write_task(name, path, default_rows(name, split), seed=cfg.train.seed, split=split)
    if dist.is_initialized():
        dist.barrier()
    return str(path)


def save(policy, cfg: Config, step: int, is_rank0: bool) -> None:  # noqa: ANN001
    """Atomic checkpoint (the models layer writes a temp dir and renames), then prune old ones."""
    from nemo_r1.models.checkpoint import checkpoint_dir

    policy.save(checkpoint_dir(cfg.output_dir, step), {"step": step})
    if is_rank0:
        prune_checkpoints(cfg.output_dir, cfg.checkpoint.keep)


def check_grpo_batch(cfg: Config) -> None:
    """GRPO's optimizer step trains prompts_per_step x num_generations sequences; a different
    train.global_batch_size (an SFT setting) set by the user would be silently ignored. The schema
    default counts as unset: a fully written config (a pipeline stage's, or one saved before GRPO
    recorded its own value in config.yaml) carries it without anyone choosing it."""
    n = cfg.grpo.prompts_per_step * cfg.grpo.num_generations
    value = cfg.train.global_batch_size
    if is_given(cfg, "train.global_batch_size") and value not in (n, TrainConfig.global_batch_size):
        raise ConfigError(f"train.global_batch_size={cfg.train.global_batch_size}, but a GRPO step trains "
                          f"grpo.prompts_per_step x grpo.num_generations = {cfg.grpo.prompts_per_step} x "
                          f"{cfg.grpo.num_generations} = {n} sequences; drop train.global_batch_size (GRPO derives "
                          "it) or change grpo.prompts_per_step")


def run_grpo(cfg: Config, policy=None, rollout=None) -> list[dict[str, Any]]:  # noqa: C901 - the loop
    """Run GRPO to `train.max_steps`; returns the metrics rows logged (on rank 0)."""
    check_model_path(cfg.model.path)
    check_grpo_batch(cfg)
    from transformers import AutoTokenizer

    from nemo_r1.data.config import DataConfig
    from nemo_r1.data.formats import load_examples
    from nemo_r1.distributed import init_distributed
    from nemo_r1.metrics import MetricsLogger
    from nemo_r1.rewards import combine_rewards
    from nemo_r1.trainers.megatron_policy import build_policy, replica_info

    torch.manual_seed(cfg.train.seed)
    if policy is None:
        init_distributed(cfg.parallel.tensor, cfg.parallel.pipeline, seed=cfg.train.seed)
    hf_dir = resolve_model(cfg.model.path)
    # data and rewards before the model: a bad row or reward name fails in seconds, not after the build
    tokenizer = AutoTokenizer.from_pretrained(hf_dir)
    dcfg = DataConfig(**{**to_dict(cfg)["data"], "train": materialize_data(cfg)})
    examples = load_examples(dcfg, tokenizer).examples
    reward_fn = combine_rewards(cfg.rewards)
    resume_from = resume_dir(cfg.train.resume, cfg.output_dir)
    if policy is None:
        policy = build_policy(cfg, hf_dir)
    replica, replicas, replica_group, dp_group, is_rank0 = replica_info()
    if rollout is None:
        from nemo_r1.rollout.colocated import ColocatedRollout

        if cfg.rollout.model is not None:
            raise ValueError(f"rollout.model={cfg.rollout.model!r}: GRPO's engine samples from the policy "
                             "(model.path); leave rollout.model unset")
        ecfg = cfg.rollout.engine(seed=cfg.train.seed, max_model_len=cfg.rollout.max_model_len or cfg.train.max_seq_len)
        rollout = ColocatedRollout(hf_dir, ecfg, group=replica_group, tp=cfg.parallel.tensor)

    start = 0
    if resume_from is not None:
        start = int(policy.load(resume_from)["step"])
        rollout.refit(policy.hf_weights())  # the engine must sample from the restored weights
        if is_rank0:
            print(f"[grpo] resumed from {resume_from} (step {start})", flush=True)
    out = Path(cfg.output_dir)
    cfg.train.global_batch_size = cfg.grpo.prompts_per_step * cfg.grpo.num_generations  # config.yaml records it
    if is_rank0:
        save_config(cfg, out)
    log = MetricsLogger(out, tensorboard=cfg.logging.tensorboard, wandb=cfg.logging.wandb,
                        wandb_project=cfg.logging.wandb_project,
                        run_config=to_dict(cfg), resume_step=start if resume_from else None) if is_rank0 else None
    heldout: list[dict[str, Any]] = []
    if cfg.data.eval and cfg.grpo.eval_problems > 0:
        heldout = heldout_examples(cfg, tokenizer)
        if start == 0 and "base" not in read_results(out):
            base = score_heldout(cfg, rollout, heldout, reward_fn, replica, replicas, replica_group, dp_group)
            if is_rank0:
                write_result(out, "base", 0, base)
    sampler = PromptSampler(len(examples), cfg.train.seed)
    G, P = cfg.grpo.num_generations, cfg.grpo.prompts_per_step
    if P % replicas:
        raise ValueError(f"grpo.prompts_per_step={P} must be a multiple of the data-parallel size {replicas}")
    rows_logged: list[dict[str, Any]] = []
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id

    from nemo_r1.console import Progress

    bar = Progress(cfg.train.max_steps, initial=start, desc="grpo", enabled=is_rank0)
    completed = start
    with StopFlag() as stop:
        for step in range(start, cfg.train.max_steps):
            scheduled = apply_schedules(cfg, step)  # first: every read of cfg below sees this step's values
            t_step = time.perf_counter()
            sampling = cfg.rollout.sampling(G, step_seed(cfg.train.seed, step, f"gen{replica}"))
            t0 = time.perf_counter()
            idx = sampler.for_step(step, P, replica, replicas)
            rows = [examples[i] for i in idx]
            rollouts = rollout.generate([r["prompt"] for r in rows], sampling)
            reward_s = -time.perf_counter()
            rewards, valid, per_name = score_on_replica(rows, rollouts, G, reward_fn, replica_group)
            reward_s += time.perf_counter()
            gen_rollouts, gen_rewards, gen_valid, gen_rows = list(rollouts), rewards, valid, list(rows)
            if cfg.grpo.dynamic_sampling:
                from nemo_r1.trainers.batching import informative_groups

                keep = informative_groups(rewards, G)
                rollouts, rewards, valid = select_groups(rollouts, rewards, valid, G, keep)
                for refill in range(1, cfg.grpo.max_refill_rounds + 1):
                    if len(rollouts) >= len(gen_rollouts):
                        break
                    extra_rows = [examples[i] for i in sampler.for_step(step, P, replica, replicas, refill)]
                    more = rollout.generate([r["prompt"] for r in extra_rows], sampling)
                    reward_s -= time.perf_counter()
                    r2, v2, _ = score_on_replica(extra_rows, more, G, reward_fn, replica_group)
                    reward_s += time.perf_counter()
                    for r in more:
                        r.prompt_index += len(rows)
                    rows = rows + extra_rows
                    more, r2, v2 = select_groups(more, r2, v2, G, informative_groups(r2, G))
                    rollouts, rewards, valid = rollouts + more, torch.cat([rewards, r2]), torch.cat([valid, v2])
                n = min(len(rollouts), len(gen_rollouts))
                rollouts, rewards, valid = rollouts[:n], rewards[:n], valid[:n]
            generate_s = time.perf_counter() - t0 - reward_s  # generation alone: tokens/s reads it

            # GPU: the engine's KV cache and weights leave the device while training runs
            # (rollout.sleep_during_training); refit wakes the weights, then the cache. CPU: no-ops.
            rollout.sleep()
            t0 = time.perf_counter()
            metrics: dict[str, Any] = {}
            idle = not rollouts  # dynamic sampling left this replica nothing to train
            if idle and replicas > 1:
                # it still takes part in every collective of the step: one group with no loss
                # tokens (zero contribution), counted as no sequences in the global normalisers
                rollouts, rewards, valid = gen_rollouts[:G], gen_rewards[:G], torch.zeros(G, dtype=torch.bool)
            if rollouts:
                batch = build_train_batch(cfg, rollouts, rewards, valid, pad_id)
                tokens, seqs = global_counts(batch, 0 if idle else len(rollouts), dp_group if replicas > 1 else None)
                if tokens > 0:  # the same global counts on every replica: an agreed skip otherwise
                    metrics = train_on_batch(cfg, policy, batch, tokens, seqs)
            train_s = time.perf_counter() - t0

            t0 = time.perf_counter()
            refit = rollout.refit(policy.hf_weights())
            rollout.wake_up()  # awake for the next generation even when refit had nothing to wake
            refit_s = time.perf_counter() - t0

            row = reward_metrics(gen_rewards, gen_valid, per_name, G)
            row.update(scheduled)
            row.update(rollout_metrics(gen_rollouts, generate_s))
            row.update({f"train/{k}": v for k, v in metrics.items() if k != "logprobs"})
            row.update({"timing/step_s": time.perf_counter() - t_step, "timing/generate_s": generate_s,
                        "timing/reward_s": reward_s,
                        "timing/train_s": train_s, "timing/refit_s": refit_s,
                        "rollout/refit_mb": refit.bytes / 2**20 if getattr(refit, "bytes", None) else 0.0})
            row.update(memory_metrics(rollout))
            if is_rank0:
                log.log(step + 1, row)
                rows_logged.append({"step": step + 1, **row})
                if cfg.grpo.samples_every and (step + 1) % cfg.grpo.samples_every == 0:
                    write_samples(out / "samples.jsonl", step + 1, gen_rows, gen_rollouts, gen_rewards)
                bar.update(step + 1, {"reward": f"{row['reward/mean']:.3f}", "s/step": f"{row['timing/step_s']:.1f}"})
            done = step + 1 == cfg.train.max_steps
            completed = step + 1
            stopping = any_rank(stop.stop)  # Slurm signals nodes at different moments: save together
            if checkpoint_due(cfg.checkpoint.every, step + 1, done, cfg.checkpoint.save_final, stopping):
                save(policy, cfg, step + 1, is_rank0)
            if stopping:
                break
    bar.close()
    if heldout and completed == cfg.train.max_steps and (completed > start or "final" not in read_results(out)):
        final = score_heldout(cfg, rollout, heldout, reward_fn, replica, replicas, replica_group, dp_group)
        if is_rank0:
            write_result(out, "final", cfg.train.max_steps, final)
    finish_run(log, out, cfg.logging.plots)
    return rows_logged
