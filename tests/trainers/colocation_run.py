"""Two GRPO steps on a tiny Llama through a rollout that records the loop's calls (run as a script
by test_grpo_colocation.py: the trainer builds a process group, which a test process must not keep)."""

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def main(out: str, model_dir: str) -> None:
    from nemo_r1.config import load_config
    from nemo_r1.rollout.colocated import ColocatedRollout
    from nemo_r1.trainers.grpo_run import run_grpo

    cfg = load_config(ROOT / "configs/grpo/demo.yaml", [
        f"output_dir={out}", f"model.path={model_dir}", "train.max_steps=2", "rollout.max_new_tokens=8",
        "grpo.prompts_per_step=2", "grpo.num_generations=2", "train.micro_batch_size=4", "checkpoint.every=0",
        "checkpoint.save_final=false", "logging.tensorboard=false", "data.max_samples=4", "rollout.kv_cache_gib=0.25",
        "grpo.eval_problems=0"])  # the order of the steps alone, no held-out scoring around them
    inner = ColocatedRollout(model_dir, cfg.rollout.engine(seed=0, max_model_len=512))
    calls: list[str] = []

    class Recording:
        tokenizer = inner.tokenizer

        def generate(self, *a, **k):
            calls.append("generate")
            return inner.generate(*a, **k)

        def refit(self, weights):
            calls.append("refit")
            return inner.refit(weights)

        def sleep(self):
            calls.append("sleep")
            inner.sleep()

        def wake_up(self):
            calls.append("wake_up")
            inner.wake_up()

    run_grpo(cfg, rollout=Recording())
    inner.shutdown()
    print("CALLS " + json.dumps(calls))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
