"""Benchmark: problems/s of `nemo-r1 eval` (vLLM engine) vs HF `generate`, same model and settings.

Both run through the same `evaluate()` (same prompts, grading and writing), one after the other in
this process, so the ratio isolates the generation backend. lighteval's own vLLM backend cannot run
here (it needs vllm<0.10.2), hence HF `generate` as the baseline. Engine start-up is reported
separately from the generation rate.

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python tools/bench_eval.py --benchmark gsm8k --limit 32 --n 4 \\
        --max-new-tokens 256
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def run(backend: str, args: argparse.Namespace, model: str, engine: object = None, name: str = "") -> dict:
    from nemo_r1.eval.runner import evaluate

    name = name or backend
    out = Path(args.out) / name
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    res = evaluate(model, benchmarks=[args.benchmark], n=args.n, temperature=args.temperature, top_p=args.top_p,
                   max_new_tokens=args.max_new_tokens, seed=args.seed, out_dir=out, backend=backend,
                   limit=args.limit, hf_batch_size=args.hf_batch_size, max_batch=args.max_batch,
                   kv_cache_gib=args.kv_cache_gib, engine=engine, print_table=False)
    wall = time.perf_counter() - t0
    samples = [json.loads(x) for x in (out / "samples" / f"{args.benchmark}.jsonl").read_text().splitlines()]
    gen_s = res["throughput"]["generate_s"]
    tokens = sum(s["length"] for s in samples)
    return {"backend": name, "problems": len(samples) // args.n, "samples": len(samples), "tokens": tokens,
            "generate_s": gen_s, "wall_s": round(wall, 2), "problems_per_s": len(samples) / args.n / gen_s,
            "tokens_per_s": tokens / gen_s, "pass@1": res["benchmarks"][args.benchmark]["pass@1"],
            "completions": {(s["id"], s["sample"]): s["completion"] for s in samples}}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="embedded:smollm2")
    p.add_argument("--benchmark", default="gsm8k")
    p.add_argument("--limit", type=int, default=32)
    p.add_argument("--n", type=int, default=4)
    p.add_argument("--temperature", type=float, default=0.6)
    p.add_argument("--top-p", type=float, default=0.95)
    p.add_argument("--max-new-tokens", type=int, default=256)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--hf-batch-size", type=int, default=32, help="HF generate batch (left padded)")
    p.add_argument("--max-batch", type=int, default=256, help="vLLM sequences in flight")
    p.add_argument("--kv-cache-gib", type=float, default=2.0)
    p.add_argument("--out", default="outputs/bench_eval")
    p.add_argument("--baseline", choices=["hf", "vllm-sort"], default="hf",
                   help="hf: transformers generate; vllm-sort: the same vLLM engine with vLLM's own "
                        "sorting top-p instead of ours (rollout/top_p.py)")
    args = p.parse_args(argv)

    from nemo_r1.embedded import resolve_model_arg

    model = resolve_model_arg(args.model)
    if args.baseline == "hf":
        ours = run("vllm", args, model)
        base = run("hf", args, model)
    else:
        ours, base = _top_p_pair(args, model)
    same = sum(ours["completions"][k] == base["completions"].get(k) for k in ours["completions"])
    for r in (ours, base):
        r.pop("completions")
    ratio = ours["problems_per_s"] / base["problems_per_s"]
    print(f"\n{args.benchmark} first {args.limit}, n={args.n}, T={args.temperature}, top_p={args.top_p}, "
          f"max_new_tokens={args.max_new_tokens}, model={args.model}")
    print("| backend | problems | samples | new tokens | generate s | problems/s | tokens/s | wall s (with load) | pass@1 |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in (ours, base):
        print(f"| {r['backend']} | {r['problems']} | {r['samples']} | {r['tokens']} | {r['generate_s']:.1f} | "
              f"{r['problems_per_s']:.3f} | {r['tokens_per_s']:.1f} | {r['wall_s']:.1f} | {r['pass@1']:.3f} |")
    print(f"ratio (ours / {base['backend']}), problems/s: {ratio:.2f}x")
    if args.temperature == 0 or args.baseline == "vllm-sort":
        print(f"completions identical: {same}/{ours['samples']}")
    summary = {"settings": vars(args), "ours": ours, "baseline": base, "ratio_problems_per_s": ratio,
               "identical_completions": same}
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "bench.json").write_text(json.dumps(summary, indent=2) + "\n")
    return 0


def _top_p_pair(args: argparse.Namespace, model: str) -> tuple[dict, dict]:
    """One engine, two runs: vLLM's sorting top-p, then ours; the samples must be identical."""
    from nemo_r1 import platform
    from nemo_r1.eval.engines import model_max_len
    from nemo_r1.rollout import EngineConfig
    from nemo_r1.rollout.vllm_engine import VLLMEngine

    engine = VLLMEngine(model, EngineConfig(max_model_len=model_max_len(model), kv_cache_gib=args.kv_cache_gib,
                                            sleep_during_training=False))
    platform.uninstall_fast_top_p()
    base = run("vllm", args, model, engine=engine, name="vllm-sort")
    platform.install_fast_top_p()
    ours = run("vllm", args, model, engine=engine, name="vllm-fast-top-p")
    return ours, base


if __name__ == "__main__":
    sys.exit(main())
