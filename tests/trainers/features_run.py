"""GRPO steps on a tiny Llama through the real loop, recording what each step generated and
trained (run as a script by test_grpo_features.py: the trainer builds a process group, which a
test process must not keep). argv: OUT MODEL [overrides...]; prints `STEPS <json>`."""

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def parity_reward(completions, params, **columns):
    """Informative only for problems of even text length: 0/1 alternating within the group there,
    all 0 elsewhere, so dynamic sampling drops about half the groups and refills."""
    return [float(i % 2) if len(p) % 2 == 0 else 0.0 for i, p in enumerate(columns["problem"])]


def main(out: str, model_dir: str, *overrides: str) -> None:
    import nemo_r1.trainers.grpo_run as loop
    from nemo_r1.config import RewardSpec, load_config
    from nemo_r1.rewards import REWARDS

    REWARDS.add("parity_probe", parity_reward)
    cfg = load_config(ROOT / "configs/grpo/demo.yaml", [
        f"output_dir={out}", f"model.path={model_dir}", "train.max_steps=1", "rollout.max_new_tokens=8",
        "grpo.prompts_per_step=4", "grpo.num_generations=2", "train.micro_batch_size=4", "checkpoint.every=0",
        "checkpoint.save_final=false", "logging.tensorboard=false", "logging.plots=false", "data.max_samples=64",
        "rollout.kv_cache_gib=0.125", *overrides])
    cfg.rewards = [RewardSpec(name="parity_probe")]
    steps: list[dict] = []
    build = loop.build_train_batch

    def recording(cfg_, rollouts, rewards, valid, pad_id):
        batch = build(cfg_, rollouts, rewards, valid, pad_id)
        steps.append({"rewards": rewards.tolist(), "truncated": [r.truncated for r in rollouts],
                      "loss_tokens": batch.mask.sum(dim=1).tolist()})
        return batch

    loop.build_train_batch = recording
    loop.run_grpo(cfg)
    print("STEPS " + json.dumps(steps))


if __name__ == "__main__":
    main(*sys.argv[1:])
