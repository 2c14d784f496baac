"""Benchmark the rollout engine side by side with HF `generate`, and the cost of a weight refit.

One process, same model, same prompts, same lengths:
1. Generation tokens/s: the vLLM engine vs transformers `generate` (the reference backend), greedy
   so both produce the very same tokens (checked), alternating the two backends `--repeats` times
   and reporting the best of each (the machine may be shared; the best run is the least disturbed).
2. Refit: seconds to stream the trainer's weights into the engine, as a fraction of a GRPO step
   (generate a batch + one training step on it + refit). The training step is a stand-in here: HF
   forward/backward + AdamW on the generated batch, fp32, same threads (the Megatron step is of the
   same order for this model size).
3. Peak extra memory (RSS sampled every 2 ms) during the streamed refit vs the model size, and for
   the naive alternative (materialise a full state-dict copy, then load it) as its reference.

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python tools/bench_rollout.py --prompts 16 --max-new-tokens 128
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "gsm8k_test.jsonl"
FALLBACK = ["What is 15% of 80?", "Explain why the sky is blue.", "Write a short poem about rivers.",
            "A train travels 60 km in 45 minutes. What is its speed in km/h?"]


class PeakRSS:
    """Peak resident memory above the level at entry, sampled by a thread (torch allocations are
    invisible to tracemalloc, and ru_maxrss only remembers the peak of the whole process)."""

    def __init__(self, interval: float = 0.002) -> None:
        self.interval = interval

    @staticmethod
    def rss() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def __enter__(self) -> PeakRSS:
        self.base = self.peak = self.rss()
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.rss())
            time.sleep(self.interval)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, self.rss())
        self.extra = self.peak - self.base


def load_prompts(tok, n: int) -> list[list[int]]:
    if DATA.exists():
        qs = [json.loads(line)["question"] for line in DATA.read_text().splitlines()[:n]]
    else:
        qs = (FALLBACK * n)[:n]
    return [tok.apply_chat_template([{"role": "user", "content": q}], add_generation_prompt=True,
                                    tokenize=True, return_dict=False) for q in qs]


def timed_generate(gen, prompts, sampling) -> tuple[float, list]:
    t0 = time.perf_counter()
    out = gen.generate(prompts, sampling)
    return time.perf_counter() - t0, out


def train_step_seconds(model, rollouts, pad_id: int) -> float:
    """Stand-in GRPO training step on the generated batch: forward, token logprob loss, backward, AdamW."""
    import torch

    seqs = [r.prompt_token_ids + r.completion_token_ids for r in rollouts]
    width = max(map(len, seqs))
    x = torch.tensor([s + [pad_id] * (width - len(s)) for s in seqs])
    attn = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in seqs])
    opt = torch.optim.AdamW(model.parameters(), lr=1e-6)
    model.train()
    t0 = time.perf_counter()
    for start in range(0, len(seqs), 8):  # micro-batches of 8
        logits = model(input_ids=x[start:start + 8], attention_mask=attn[start:start + 8]).logits
        lp = logits[:, :-1].log_softmax(-1).gather(-1, x[start:start + 8, 1:].unsqueeze(-1)).squeeze(-1)
        (-(lp * attn[start:start + 8, 1:]).sum() / attn.sum()).backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    model.eval()
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="embedded:smollm2")
    p.add_argument("--prompts", type=int, default=16)
    p.add_argument("--max-new-tokens", type=int, default=128)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--hf-batch-size", type=int, default=16)
    p.add_argument("--grpo-n", type=int, default=4, help="samples per prompt in the refit-fraction step")
    p.add_argument("--refit-bucket-mb", type=int, default=256)
    p.add_argument("--kv-cache-gib", type=float, default=1.0)
    p.add_argument("--out", default="outputs/bench_rollout/results.json")
    args = p.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    from nemo_r1.rollout.base import EngineConfig, SamplingConfig
    from nemo_r1.rollout.hf_engine import HFGenerator
    from nemo_r1.rollout.vllm_engine import VLLMEngine

    model = args.model
    if model == "embedded:smollm2":
        from nemo_r1.embedded import ensure_smollm2

        model = str(ensure_smollm2())
    t0 = time.perf_counter()
    vllm = VLLMEngine(model, EngineConfig(max_model_len=2048, kv_cache_gib=args.kv_cache_gib,
                                          refit_bucket_mb=args.refit_bucket_mb))
    startup = time.perf_counter() - t0
    hf = HFGenerator(model, EngineConfig(backend="hf", hf_batch_size=args.hf_batch_size))
    prompts = load_prompts(hf.tokenizer, args.prompts)
    greedy = SamplingConfig(temperature=0, max_new_tokens=args.max_new_tokens)
    warm = SamplingConfig(temperature=0, max_new_tokens=8)
    vllm.generate(prompts[:4], warm)
    hf.generate(prompts[:4], warm)

    times: dict[str, list[float]] = {"vllm": [], "hf": []}
    outs: dict[str, list] = {}
    for _ in range(args.repeats):
        for name, gen in (("vllm", vllm), ("hf", hf)):
            s, outs[name] = timed_generate(gen, prompts, greedy)
            times[name].append(s)
    tokens = {k: sum(len(r.completion_token_ids) for r in v) for k, v in outs.items()}
    same = sum(a.completion_token_ids == b.completion_token_ids for a, b in zip(outs["vllm"], outs["hf"],
                                                                                 strict=True))
    tps = {k: tokens[k] / min(times[k]) for k in times}

    # refit inside a GRPO-like step: sample a batch, train on it, push the new weights
    trainer = hf.model  # stands in for the policy being trained (same weights as the engine)
    batch_cfg = SamplingConfig(n=args.grpo_n, temperature=1.0, max_new_tokens=args.max_new_tokens, seed=0)
    gen_s, batch = timed_generate(vllm, prompts[:max(1, args.prompts // args.grpo_n)], batch_cfg)
    train_s = train_step_seconds(trainer, batch, hf.pad_id)
    model_bytes = sum(t.numel() * t.element_size() for t in trainer.parameters())  # tied counted once
    refit = []
    for _ in range(args.repeats):
        with PeakRSS() as mem:
            stats = vllm.update_weights(trainer.named_parameters())
        refit.append((stats.seconds, mem.extra, stats.max_bucket_bytes))
    with PeakRSS() as naive_mem:
        t0 = time.perf_counter()
        copy = {k: v.detach().clone() for k, v in trainer.state_dict().items()}
        vllm.update_weights(iter(copy.items()))
        naive_s = time.perf_counter() - t0
        del copy
    refit_s = min(r[0] for r in refit)
    step_s = gen_s + train_s + refit_s
    # the engine now holds the trained weights: its greedy scores must equal the trainer's
    seq = [batch[0].prompt_token_ids + batch[0].completion_token_ids]
    with torch.no_grad():
        trainer.eval()
        ref = hf.score(seq)[0]
    drift = max(abs(a - b) for a, b in zip(vllm.score(seq)[0], ref, strict=True))

    res = {
        "model": model, "threads": args.threads, "prompts": len(prompts), "max_new_tokens": args.max_new_tokens,
        "vllm_startup_s": round(startup, 1), "tokens": tokens, "identical_completions": f"{same}/{len(prompts)}",
        "gen_s": {k: [round(x, 2) for x in v] for k, v in times.items()},
        "tokens_per_s": {k: round(v, 1) for k, v in tps.items()}, "speedup": round(tps["vllm"] / tps["hf"], 2),
        "step": {"generate_s": round(gen_s, 2), "train_s": round(train_s, 2), "refit_s": round(refit_s, 3),
                 "refit_frac": round(refit_s / step_s, 4), "rollouts": len(batch)},
        "refit_runs_s": [round(r[0], 3) for r in refit], "model_mb": round(model_bytes / 2**20, 1),
        "refit_peak_extra_mb": round(max(r[1] for r in refit) / 2**20, 1),
        "refit_max_bucket_mb": round(max(r[2] for r in refit) / 2**20, 1),
        "naive_refit_s": round(naive_s, 3), "naive_peak_extra_mb": round(naive_mem.extra / 2**20, 1),
        "post_refit_max_logprob_diff": drift,
    }
    rows = [
        ("generation tokens/s  vLLM | HF generate", f"{tps['vllm']:.1f} | {tps['hf']:.1f}",
         f"{res['speedup']}x (goal >= 3x)"),
        ("identical greedy completions", res["identical_completions"], f"{tokens['vllm']} tokens each"),
        ("vLLM engine start-up", f"{startup:.1f} s", "once per run"),
        ("GRPO-like step: generate + train + refit",
         f"{gen_s:.2f} + {train_s:.2f} + {refit_s:.2f} s", f"{len(batch)} rollouts"),
        ("refit time / step time", f"{refit_s:.3f} s", f"{100 * refit_s / step_s:.2f}% (goal < 5%)"),
        ("refit peak extra RSS (streamed)", f"{res['refit_peak_extra_mb']} MB",
         f"{res['refit_peak_extra_mb'] / res['model_mb']:.2f}x model {res['model_mb']} MB"),
        ("refit peak extra RSS (naive full copy)", f"{res['naive_peak_extra_mb']} MB",
         f"{res['naive_peak_extra_mb'] / res['model_mb']:.2f}x model, {naive_s:.2f} s"),
        ("engine vs trainer logprobs after refit", f"{drift:.2e}", "max |diff|"),
    ]
    w = max(len(r[0]) for r in rows)
    print(f"\nbench_rollout: {Path(model).name}, {len(prompts)} prompts x {args.max_new_tokens} new tokens, "
          f"{args.threads} threads")
    for a, b, c in rows:
        print(f"  {a:<{w}}  {b:>22}  {c}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(res, indent=2))
    os.replace(tmp, out)
    print(f"  -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
