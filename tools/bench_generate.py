"""Benchmark: new tokens/s of `nemo-r1 generate` vs a plain vLLM offline `LLM.generate` call.

Both sides use ONE engine (same weights, KV cache and settings) on the same rows, prompts
(generate's chat-templated ones), per-sample seeds and sampling settings, alternating within this
process (`--repeats` pairs in ABBA order, after one warm-up of each). Both clocks run from the data rows to the
completions: the plain side templates and tokenizes, then sends every request in one
`LLM.generate` call and keeps the results in memory (the strongest baseline); our side is the
whole `generate()`: the same reading and templating, streaming through the add_request/step loop,
and one fsync'ed append per problem into a fresh output dir; so the ratio prices in the cost of
resume and streaming rather than assuming it. Tokens are counted without a closing EOS on both. With `--baseline-batch B` the plain side instead
loops over chunks of B prompts (open-r1's script pattern), each chunk waiting for its longest.

    .venv/bin/nemo-r1 bench generate --limit 32 --n 4 --max-new-tokens 128 --repeats 6
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def plain(engine, settings, batch: int | None) -> tuple[float, dict]:
    """The baseline: a script's loop from the same rows: template, tokenize, LLM.generate with the
    same per-sample seeds, results kept in memory (nothing written)."""
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    from nemo_r1.rollout.generate import build_prompt, load_problems
    from nemo_r1.rollout.parallel import sample_seed
    from nemo_r1.rollout.vllm_engine import _completion

    t0 = time.perf_counter()
    tok = engine.tokenizer
    reqs, params, keys = [], [], []
    for _index, pid, row in load_problems(settings):
        ids = tok(build_prompt(tok, row["problem"], settings), add_special_tokens=False)["input_ids"]
        for j in range(settings.n):
            reqs.append(TokensPrompt(prompt_token_ids=ids))
            params.append(SamplingParams(n=1, temperature=settings.temperature, top_p=settings.top_p,
                                         max_tokens=settings.max_new_tokens,
                                         seed=sample_seed(settings.seed, "generate", pid, j)))
            keys.append((pid, j))
    step = batch or len(reqs)
    outs = []
    for s in range(0, len(reqs), step):
        outs += engine.llm.generate(reqs[s:s + step], params[s:s + step], use_tqdm=False)
    seconds = time.perf_counter() - t0
    comps = [_completion(o.outputs[0]) for o in outs]  # token counts without a closing EOS, as ours
    texts = {k: c.text for k, c in zip(keys, comps, strict=True)}
    return seconds, {"tokens": sum(len(c.token_ids) for c in comps), "texts": texts}


def ours(engine, settings, out: Path, max_batch: int) -> tuple[float, dict]:
    from nemo_r1.rollout.generate import generate

    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    generate(settings, out, engine=engine, max_batch=max_batch, progress=False)
    seconds = time.perf_counter() - t0
    rows = [json.loads(x) for x in (out / "generations.jsonl").read_text().splitlines()]
    return seconds, {"tokens": sum(r["completion_tokens"] for r in rows),
                     "texts": {(r["id"], r["sample"]): r["completion"] for r in rows}}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="embedded:smollm2")
    p.add_argument("--data", default="data/gsm8k_test.jsonl")
    p.add_argument("--limit", type=int, default=64, help="first N problems of --data")
    p.add_argument("--n", type=int, default=4)
    p.add_argument("--temperature", type=float, default=0.6)
    p.add_argument("--top-p", type=float, default=0.95)
    p.add_argument("--max-new-tokens", type=int, default=256)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-batch", type=int, default=256, help="our sequences in flight")
    p.add_argument("--baseline-batch", type=int, default=None,
                   help="plain side: prompts per LLM.generate call (default: all in one call)")
    p.add_argument("--kv-cache-gib", type=float, default=2.0)
    p.add_argument("--repeats", type=int, default=4, help="pairs, alternately plain-first and ours-first")
    p.add_argument("--out", default="outputs/bench")
    args = p.parse_args(argv)

    from nemo_r1.embedded import resolve_model_arg
    from nemo_r1.rollout import RolloutConfig, build_generator
    from nemo_r1.rollout.generate import GenerateSettings

    model = resolve_model_arg(args.model)
    work = Path(args.out) / "generate_work"
    work.mkdir(parents=True, exist_ok=True)
    data = work / "problems.jsonl"
    from nemo_r1.data.loading import iter_source

    rows = [r for _, r, _ in iter_source(args.data)][:args.limit]
    data.write_text("".join(json.dumps({"id": r.get("id", f"row{i}"), "problem": r.get("problem") or r["question"]})
                            + "\n" for i, r in enumerate(rows)))
    settings = GenerateSettings(model=model, data=str(data), n=args.n, temperature=args.temperature, top_p=args.top_p,
                                max_new_tokens=args.max_new_tokens, seed=args.seed)
    engine = build_generator(RolloutConfig(model=model, kv_cache_gib=args.kv_cache_gib, seed=args.seed,
                                           sleep_during_training=False))
    warm = GenerateSettings(**{**vars(settings), "n": 1})  # warm-up of both paths (first-call costs)
    plain(engine, warm, None)
    ours(engine, warm, work / "warmup", args.max_batch)
    runs: dict[str, list[dict]] = {"plain": [], "ours": []}
    for r in range(args.repeats):
        # ABBA order (plain-first, then ours-first, ...): a slow drift of the machine's speed
        # cancels instead of always landing on the side that runs second
        for side in (("plain", "ours") if r % 2 == 0 else ("ours", "plain")):
            if side == "plain":
                s, res = plain(engine, settings, args.baseline_batch)
            else:
                s, res = ours(engine, settings, work / f"out{r}", args.max_batch)
            runs[side].append({"seconds": round(s, 3), "tokens": res["tokens"], "tokens_per_s": res["tokens"] / s,
                               "texts": res["texts"]})
            print(f"repeat {r + 1} {side:>5}: {res['tokens']} tokens in {s:.1f} s = {res['tokens'] / s:.1f} tokens/s",
                  flush=True)
    same = sum(runs["ours"][0]["texts"][k] == v for k, v in runs["plain"][0]["texts"].items())
    total = len(runs["plain"][0]["texts"])
    for side in runs.values():
        for rec in side:
            rec.pop("texts")
    med = {k: statistics.median(x["tokens_per_s"] for x in v) for k, v in runs.items()}
    pair = [o["tokens_per_s"] / b["tokens_per_s"] for o, b in zip(runs["ours"], runs["plain"], strict=True)]
    print(f"\n{args.data} first {args.limit}, n={args.n}, T={args.temperature}, top_p={args.top_p}, "
          f"max_new_tokens={args.max_new_tokens}, model={args.model}, baseline batch="
          f"{args.baseline_batch or 'all'}")
    print("| side | median tokens/s | runs (tokens/s) |")
    print("|---|---|---|")
    for k, v in runs.items():
        print(f"| {'nemo-r1 generate' if k == 'ours' else 'vLLM LLM.generate'} | {med[k]:.1f} | "
              f"{', '.join(format(x['tokens_per_s'], '.1f') for x in v)} |")
    print(f"ratio (generate / LLM.generate), median tokens/s: {med['ours'] / med['plain']:.2f}x "
          f"(pairs {min(pair):.2f}-{max(pair):.2f}); identical completions {same}/{total}")
    summary = {"settings": vars(args), "runs": runs, "median_tokens_per_s": med,
               "ratio": med["ours"] / med["plain"], "pair_ratios": pair, "identical_completions": same,
               "completions": total}
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = Path(args.out) / f"generate_{stamp}.json"
    path.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"raw results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
