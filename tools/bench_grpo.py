"""Seconds per GRPO step: nemo-r1 (Megatron + colocated vLLM) vs TRL's GRPOTrainer, side by side.

Same model (the embedded SmolLM2-135M-Instruct), same prompts (the generated arithmetic task,
rendered with the model's chat template), same group size, completion length, batch, loss type
(dapo), beta=0, fp32 on CPU, same thread count.
TRL runs with its default CPU generation path (HF `generate`); its vLLM colocate mode needs CUDA.

The first `--warmup` steps of each are excluded: on a fresh VM the first touch of each memory page
is expensive (step 2 of ours still page-faulted 1.1 GB, ~4 s of system time), and TRL, which runs
second in the same process, reuses the heap ours already touched. The per-step times of both are
printed, warm-up included.

`--task demo` (default) renders the prompts as `make demo` does (configs/grpo/demo.yaml: two
worked examples, no instruction), so rewards vary within groups and training has signal;
`--task plain` is the arithmetic problem with the boxed instruction and no examples, on which the
135M model scores 0 in 32 tokens: every advantage is 0, so there is nothing to learn and our
trainer skips all but one group (`grpo.skip_zero_advantage`) while TRL trains on all of them.
The output gives the reward and the fraction of groups trained per step for that reason.

    .venv/bin/python tools/bench_grpo.py --steps 6 --warmup 2 --prompts 8 --generations 4 --max-new-tokens 32
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

from nemo_r1.demo import DEMO_CONFIG


def run_ours(args: argparse.Namespace, data: Path, out: Path) -> list[dict]:
    from nemo_r1.config import load_config
    from nemo_r1.trainers.grpo_run import run_grpo

    base = str(DEMO_CONFIG) if args.task == "demo" else None  # its data section: few-shot turns, no suffix
    cfg = load_config(base, ["checkpoint.every=0", "logging.plots=false", "rewards=[{name: accuracy, weight: 1.0}]",
        f"output_dir={out}", "model.path=embedded:smollm2", f"data.train={data}",
        f"grpo.num_generations={args.generations}", f"grpo.prompts_per_step={args.prompts}",
        f"rollout.max_new_tokens={args.max_new_tokens}", "rollout.temperature=1.0", f"train.max_steps={args.steps}",
        f"train.micro_batch_size={args.micro_batch}", f"train.global_batch_size={args.micro_batch}",
        "optim.lr=1e-6", "grpo.loss_type=dapo", "checkpoint.save_final=false", "logging.tensorboard=false",
        "train.resume=none", "grpo.samples_every=0", "train.max_seq_len=512", *args.override])
    return run_grpo(cfg)


def run_trl(args: argparse.Namespace, prompts: list[str], answers: list[str], out: Path
            ) -> tuple[list[float], list[float]]:
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from nemo_r1.embedded import ensure_smollm2
    from nemo_r1.rewards import get_reward

    path = ensure_smollm2()
    times: list[float] = []

    class StepTimer(TrainerCallback):
        def on_step_begin(self, *a, **k):  # noqa: ANN002, ANN003
            self.t0 = time.perf_counter()

        def on_step_end(self, *a, **k):  # noqa: ANN002, ANN003
            times.append(time.perf_counter() - self.t0)

    accuracy = get_reward("accuracy")

    def reward(completions, answer, **_):  # noqa: ANN001, ANN003
        return [x if x is not None else 0.0 for x in accuracy(completions, answer=answer)]

    n = args.prompts * args.steps
    ds = Dataset.from_dict({"prompt": prompts[:n], "answer": answers[:n]})
    cfg = GRPOConfig(output_dir=str(out), use_cpu=True, bf16=False, num_generations=args.generations,
                     per_device_train_batch_size=args.prompts * args.generations, gradient_accumulation_steps=1,
                     max_completion_length=args.max_new_tokens, temperature=1.0, beta=0.0, loss_type="dapo",
                     learning_rate=1e-6, max_steps=args.steps, logging_steps=1, report_to="none",
                     save_strategy="no", seed=0, dataloader_num_workers=0, shuffle_dataset=False)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(path)
    trainer = GRPOTrainer(model=model, reward_funcs=reward, args=cfg, train_dataset=ds, processing_class=tok,
                          callbacks=[StepTimer()])
    trainer.train()
    rewards = [h["reward"] for h in trainer.state.log_history if "reward" in h]
    return times, rewards


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--warmup", type=int, default=2, help="first steps of each run excluded from the means")
    ap.add_argument("--prompts", type=int, default=4)
    ap.add_argument("--generations", type=int, default=8)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--micro-batch", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--task", choices=("demo", "plain"), default="demo",
                    help="prompt format: the demo's few-shot turns (rewards vary) or the bare boxed instruction")
    ap.add_argument("--override", action="append", default=[], metavar="KEY=VALUE",
                    help="extra config override for our run (repeatable), e.g. grpo.skip_zero_advantage=false")
    ap.add_argument("--json", default=None, help="also write the results here")
    args = ap.parse_args()
    if not 0 <= args.warmup < args.steps:
        ap.error(f"--warmup {args.warmup} must be in [0, --steps {args.steps})")
    torch.set_num_threads(args.threads)

    from transformers import AutoTokenizer

    from nemo_r1.data.tasks import write_jsonl
    from nemo_r1.data.templates import BOXED_SUFFIX, problem_messages, render_prompt
    from nemo_r1.embedded import ensure_smollm2

    tmp = Path(tempfile.mkdtemp(prefix="bench_grpo_"))
    data = write_jsonl(tmp / "arith.jsonl", 512, seed=0)
    rows = [json.loads(line) for line in data.read_text().splitlines()]
    tok = AutoTokenizer.from_pretrained(ensure_smollm2())
    from nemo_r1.trainers.grpo_step import PromptSampler

    sampler = PromptSampler(len(rows), 0)  # the order our trainer visits: give TRL the same prompts
    order = [sampler.index(i) for i in range(args.prompts * args.steps)]
    if args.task == "demo":
        from nemo_r1.config import load_config

        demo = load_config(DEMO_CONFIG).data  # the same loader (and defaults chain) as our run
        suffix, shots = demo.prompt_suffix, demo.few_shot
    else:
        suffix, shots = BOXED_SUFFIX, None
    prompts = [render_prompt(problem_messages(rows[i]["problem"], None, suffix, shots), tok) for i in order]
    answers = [rows[i]["answer"] for i in order]

    ours = run_ours(args, data, tmp / "ours")
    trl_times, trl_rewards = run_trl(args, prompts, answers, tmp / "trl")
    w = args.warmup
    ours_s = [r["timing/step_s"] for r in ours][w:]
    trl_s = trl_times[w:]
    res = {
        "settings": vars(args),
        "nemo_r1_steps_s": [round(r["timing/step_s"], 2) for r in ours], "trl_steps_s": [round(t, 2) for t in trl_times],
        "nemo_r1_step_s": statistics.mean(ours_s), "trl_step_s": statistics.mean(trl_s),
        "speedup": statistics.mean(trl_s) / statistics.mean(ours_s),
        "nemo_r1_reward_per_step": [round(r["reward/mean"], 3) for r in ours],
        "trl_reward_per_step": [round(r, 3) for r in trl_rewards],
        "nemo_r1_trained_frac_per_step": [round(r.get("train/trained_frac", 1.0), 3) for r in ours],
        "nemo_r1_breakdown": {k: statistics.mean(r[k] for r in ours[w:]) for k in
                              ("timing/generate_s", "timing/train_s", "timing/refit_s")},
    }
    print(json.dumps(res, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
