"""`make demo`: the main job on the embedded default model.

Until the GRPO trainer (issue #7) lands, the demo runs the smallest working piece end to end:
build the embedded SmolLM2 checkpoint, answer a few arithmetic problems greedily with HF
`generate`, and write config.yaml, metrics.jsonl (per problem) and plots like every run does.
"""

from __future__ import annotations

import argparse
import re
import time

from nemo_r1.config import load_config, save_config
from nemo_r1.embedded import ensure_smollm2
from nemo_r1.metrics import MetricsLogger
from nemo_r1.plot import plot_metrics

PROBLEMS = [("What is 7 + 5?", "12"), ("What is 9 - 4?", "5"), ("What is 3 * 4?", "12"), ("What is 8 + 6?", "14")]


def main(args: argparse.Namespace) -> int:
    cfg = load_config(args.config, ["output_dir=outputs/demo", *args.overrides])
    print("[demo] GRPO (issue #7) has not landed: running the foundation demo (fetch model, generate, log)")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(cfg.train.seed)
    path = ensure_smollm2() if cfg.model.path == "embedded:smollm2" else cfg.model.path
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    save_config(cfg, cfg.output_dir)
    correct = 0
    with MetricsLogger(cfg.output_dir, tensorboard=cfg.logging.tensorboard) as log:
        for step, (q, gold) in enumerate(PROBLEMS):
            msgs = [{"role": "user", "content": f"{q} Answer with just the number."}]
            enc = tok.apply_chat_template(msgs, add_generation_prompt=True, return_tensors="pt", return_dict=True)
            t0 = time.perf_counter()
            with torch.no_grad():
                out = model.generate(**enc, max_new_tokens=24, do_sample=False)
            dt = time.perf_counter() - t0
            new = out[0, enc["input_ids"].shape[1]:]
            text = tok.decode(new, skip_special_tokens=True)
            nums = re.findall(r"-?\d+", text)
            ok = float(bool(nums) and nums[-1] == gold)
            correct += ok
            log.log(step, {"reward/mean": ok, "rollout/tokens_per_s": len(new) / dt, "rollout/mean_length": len(new)})
            print(f"[demo] {q} -> {text.strip()!r} ({'correct' if ok else 'wrong'}, {len(new) / dt:.1f} tok/s)")
    for p in plot_metrics(cfg.output_dir):
        print(f"[demo] plot: {p}")
    print(f"[demo] {int(correct)}/{len(PROBLEMS)} correct; outputs in {cfg.output_dir}")
    return 0
