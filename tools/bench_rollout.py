"""Benchmark the rollout engine side by side with HF `generate`, and the cost of a weight refit.

One process, same model (SmolLM2-135M by default), same prompts, fp32, same torch threads:
1. Greedy: vLLM engine vs transformers `generate` (the reference backend) on the same chat prompts;
   both produce the very same tokens (checked), so lengths are equal by construction.
2. GRPO-shaped sampling: P prompts x n samples at temperature 1 (the rollout workload), tokens/s
   of each backend on the same prompts and settings.
3. A GRPO-like step on the real stack: vLLM generates the batch, Megatron (TP1, CPU shim) takes one
   optimizer step on it, then the new weights stream from Megatron (`iter_hf_weights`) into vLLM.
   Refit seconds and their share of the step; peak extra RSS during the streamed refit and during
   the naive alternative (materialise a full HF state dict, then load it), both vs the model size;
   finally the engine's logprobs vs Megatron's after the refit.

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python tools/bench_rollout.py
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
        import ctypes

        # hand freed heap pages back first, or new allocations reuse them without raising RSS
        ctypes.CDLL("libc.so.6").malloc_trim(0)
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


def megatron_policy(hf_dir: str, lr: float):
    """SmolLM2 as a Megatron GPTModel (world of one, CPU shim) with its optimizer: the trainer."""
    from nemo_r1.distributed import init_distributed
    from nemo_r1.models.build import build_model
    from nemo_r1.models.config import model_info, read_hf_config
    from nemo_r1.models.hf_import import load_hf_weights
    from nemo_r1.models.train import OptimSettings, setup_training

    init_distributed(tp=1, pp=1)
    model = build_model(model_info(read_hf_config(hf_dir), tp=1))
    load_hf_weights(model, hf_dir)
    return setup_training(model, OptimSettings(lr=lr, scheduler="constant"), total_steps=1)


def pad(seqs: list[list[int]], pad_id: int):
    import torch

    width = max(map(len, seqs))
    return torch.tensor([s + [pad_id] * (width - len(s)) for s in seqs])


def megatron_step(state, rollouts, pad_id: int, micro: int = 2) -> float:
    """One optimizer step of a REINFORCE-style loss (+1/-1 advantages by length) on the rollouts."""
    import torch

    from nemo_r1.models.train import train_step

    seqs = [r.prompt_token_ids + r.completion_token_ids for r in rollouts]
    med = sorted(len(r.completion_token_ids) for r in rollouts)[len(rollouts) // 2]
    mbs = []
    for i in range(0, len(seqs), micro):
        part = rollouts[i:i + micro]
        toks = pad(seqs[i:i + micro], pad_id)
        mask = toks.new_zeros(toks.shape[0], toks.shape[1] - 1, dtype=torch.float32)
        adv = []
        for j, r in enumerate(part):
            p, c = len(r.prompt_token_ids), len(r.completion_token_ids)
            mask[j, p - 1:p - 1 + c] = 1.0
            adv.append(1.0 if c < med else -1.0)
        mbs.append({"tokens": toks, "mask": mask, "adv": mask.new_tensor(adv)})
    n_tok = float(sum(mb["mask"].sum() for mb in mbs))

    def loss_fn(lp, mb):
        return -(lp * mb["mask"] * mb["adv"][:, None]).sum() / n_tok

    t0 = time.perf_counter()
    train_step(state, mbs, loss_fn)
    return time.perf_counter() - t0


def megatron_logprobs(state, seqs: list[list[int]]) -> list[list[float]]:
    import torch

    from nemo_r1.models.forward import forward_backward_logprobs

    with torch.no_grad():
        out = forward_backward_logprobs(state.model, [{"tokens": pad(seqs, 0)}], forward_only=True)
    return [out.logprobs[0][i, : len(s) - 1].tolist() for i, s in enumerate(seqs)]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="embedded:smollm2")
    p.add_argument("--greedy-prompts", type=int, default=8)
    p.add_argument("--greedy-tokens", type=int, default=128)
    p.add_argument("--prompts", type=int, default=4, help="GRPO-shaped workload: prompts ...")
    p.add_argument("--n", type=int, default=8, help="... x samples per prompt")
    p.add_argument("--max-new-tokens", type=int, default=256)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--hf-batch-size", type=int, default=32)
    p.add_argument("--refit-bucket-mb", type=int, default=64, help="iter_hf_weights bucket size")
    p.add_argument("--kv-cache-gib", type=float, default=1.0)
    p.add_argument("--lr", type=float, default=1e-5)
    p.add_argument("--out", default="outputs/bench_rollout/results.json")
    args = p.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    from nemo_r1.models.hf_export import hf_state_dict, iter_hf_weights
    from nemo_r1.rollout.agreement import diff_of_lists
    from nemo_r1.rollout.base import EngineConfig, SamplingConfig
    from nemo_r1.rollout.hf_engine import HFGenerator
    from nemo_r1.rollout.vllm_engine import VLLMEngine

    model = args.model
    if model == "embedded:smollm2":
        from nemo_r1.embedded import ensure_smollm2

        model = str(ensure_smollm2())
    state = megatron_policy(model, args.lr)
    t0 = time.perf_counter()
    vllm = VLLMEngine(model, EngineConfig(max_model_len=2048, kv_cache_gib=args.kv_cache_gib,
                                          refit_bucket_mb=args.refit_bucket_mb))
    startup = time.perf_counter() - t0
    hf = HFGenerator(model, EngineConfig(backend="hf", hf_batch_size=args.hf_batch_size))
    prompts = load_prompts(hf.tokenizer, max(args.greedy_prompts, args.prompts))
    warm = SamplingConfig(temperature=0, max_new_tokens=8)
    vllm.generate(prompts[:4], warm)
    hf.generate(prompts[:4], warm)

    res: dict = {"model": model, "threads": args.threads, "vllm_startup_s": round(startup, 1)}
    work = {
        "greedy": (prompts[:args.greedy_prompts], SamplingConfig(temperature=0, max_new_tokens=args.greedy_tokens)),
        "grpo": (prompts[:args.prompts], SamplingConfig(n=args.n, temperature=1.0, max_new_tokens=args.max_new_tokens,
                                                        seed=0)),
    }
    outs: dict = {}
    for wname, (ps, sc) in work.items():
        row = {}
        for bname, gen in (("vllm", vllm), ("hf", hf)):
            s, out = timed_generate(gen, ps, sc)
            outs[wname, bname] = out
            tok = sum(len(r.completion_token_ids) for r in out)
            row[bname] = {"s": round(s, 2), "tokens": tok, "tokens_per_s": round(tok / s, 1), "samples": len(out)}
        row["speedup"] = round(row["vllm"]["tokens_per_s"] / row["hf"]["tokens_per_s"], 2)
        res[wname] = row
    same = sum(a.completion_token_ids == b.completion_token_ids
               for a, b in zip(outs["greedy", "vllm"], outs["greedy", "hf"], strict=True))
    res["greedy"]["identical"] = f"{same}/{len(outs['greedy', 'vllm'])}"

    batch = outs["grpo", "vllm"]
    gen_s = res["grpo"]["vllm"]["s"]
    train_s = megatron_step(state, batch, hf.pad_id)
    model_bytes = sum(t.numel() * t.element_size() for t in state.model.parameters())
    bucket = args.refit_bucket_mb << 20
    with PeakRSS() as mem:
        stats = vllm.update_weights(iter_hf_weights(state.model, bucket_bytes=bucket))
    refit_s = stats.seconds
    seqs = [r.prompt_token_ids + r.completion_token_ids for r in batch[:4]]
    drift = diff_of_lists(megatron_logprobs(state, seqs), vllm.score(seqs))
    with PeakRSS() as naive_mem:
        t0 = time.perf_counter()
        full = hf_state_dict(state.model)
        vllm.update_weights(iter(full.items()))
        naive_s = time.perf_counter() - t0
        del full
    step_s = gen_s + train_s + refit_s
    res["step"] = {"rollouts": len(batch), "generate_s": gen_s, "train_s": round(train_s, 2),
                   "refit_s": round(refit_s, 3), "refit_frac": round(refit_s / step_s, 4)}
    res["refit"] = {"model_mb": round(model_bytes / 2**20, 1), "tensors": stats.tensors,
                    "bucket_mb": args.refit_bucket_mb, "max_tensor_mb": round(stats.max_tensor_bytes / 2**20, 1),
                    "peak_extra_mb": round(mem.extra / 2**20, 1), "naive_s": round(naive_s, 3),
                    "naive_peak_extra_mb": round(naive_mem.extra / 2**20, 1),
                    "engine_vs_megatron": drift}

    g, r, st, rf = res["greedy"], res["grpo"], res["step"], res["refit"]
    rows = [
        (f"greedy {len(work['greedy'][0])} prompts x {args.greedy_tokens}: tokens/s vLLM | HF",
         f"{g['vllm']['tokens_per_s']} | {g['hf']['tokens_per_s']}", f"{g['speedup']}x, identical {g['identical']}"),
        (f"GRPO {args.prompts} prompts x n={args.n} x {args.max_new_tokens}, T=1: tokens/s vLLM | HF",
         f"{r['vllm']['tokens_per_s']} | {r['hf']['tokens_per_s']}", f"{r['speedup']}x (goal >= 3x)"),
        ("vLLM engine start-up", f"{startup:.1f} s", "once per run"),
        ("GRPO step: generate + Megatron train + refit", f"{gen_s:.1f} + {train_s:.1f} + {refit_s:.2f} s",
         f"{len(batch)} rollouts"),
        ("refit share of the step", f"{refit_s:.2f} s", f"{100 * st['refit_frac']:.2f}% (goal < 5%)"),
        ("refit peak extra RSS, streamed", f"{rf['peak_extra_mb']} MB",
         f"{rf['peak_extra_mb'] / rf['model_mb']:.2f}x model ({rf['model_mb']} MB), export buckets {rf['bucket_mb']} MB"),
        ("refit peak extra RSS, naive full copy", f"{rf['naive_peak_extra_mb']} MB",
         f"{rf['naive_peak_extra_mb'] / rf['model_mb']:.2f}x model, {naive_s:.2f} s"),
        ("engine vs Megatron logprobs after refit", f"{drift['train/logprob_diff']:.1e}",
         f"max {drift['train/logprob_diff_max']:.1e}"),
    ]
    w = max(len(x[0]) for x in rows)
    print(f"\nbench_rollout: {Path(model).name}, fp32, {args.threads} torch threads")
    for a, b, c in rows:
        print(f"  {a:<{w}}  {b:>20}  {c}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(res, indent=2))
    os.replace(tmp, out)
    print(f"  -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
