"""`nemo-r1 eval ...`: flags -> `evaluate()` (or the lighteval bridge). `main(args)` gets the top-level
CLI's namespace whose `rest` is the raw argv after `eval`; `main(["--model", ...])` also works."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="nemo-r1 eval",
        description="pass@k on reasoning benchmarks with a vLLM engine (resumable, reproducible). "
                    "Defaults follow open-r1: T 0.6, top_p 0.95, 32768 new tokens, the \\boxed prompt.")
    p.add_argument("--model", required=True,
                   help="HF checkpoint dir (or hub name), a Megatron checkpoint dir (exported to HF on the "
                        "fly), or embedded:smollm2")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--benchmarks", default=None,
                     help="comma list of math500,aime24,amc23,gsm8k,minerva,olympiadbench,mbppplus "
                          "(default: the six math sets); with --backend lighteval: aime24,math_500,...")
    src.add_argument("--data", default=None,
                     help="any jsonl, or hf:owner/name[:config][@split], with problem/answer columns (see --columns)")
    p.add_argument("--columns", nargs="*", default=[], metavar="KEY=COLUMN",
                   help="column mapping for --data, e.g. problem=question answer=final id=uid")
    p.add_argument("--n", type=int, default=1, help="samples per problem (pass@1 averages them)")
    p.add_argument("--temperature", type=float, default=0.6, help="0 = greedy")
    p.add_argument("--top-p", type=float, default=0.95)
    p.add_argument("--max-new-tokens", type=int, default=32768)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="outputs/eval", help="output dir (a rerun resumes there)")
    p.add_argument("--backend", choices=["vllm", "hf", "lighteval"], default="vllm",
                   help="vllm: our engine; hf: transformers generate (slow baseline); lighteval: "
                        "lighteval's own tasks and metrics on our engine")
    p.add_argument("--limit", type=int, default=None, help="first N problems of each benchmark")
    p.add_argument("--dp", type=int, default=1, help="data-parallel engines (processes)")
    p.add_argument("--system-prompt", default=None, help="`r1` (the R1-Zero system prompt) or any text")
    p.add_argument("--chat-template", default=None,
                   help="default: the tokenizer's; chatml, chatml_think (prefills <think>), r1_zero, a .jinja "
                        "file, or `none` (raw text, for base models without a template)")
    p.add_argument("--max-batch", type=int, default=256,
                   help="sequences in flight per engine (vLLM refills as they finish; HF runs chunks of this)")
    p.add_argument("--hf-batch-size", type=int, default=None, help="batch size of --backend hf (default 16)")
    from nemo_r1.rollout.cli import add_engine_args

    add_engine_args(p)
    p.add_argument("--overwrite", action="store_true", help="delete the samples in --out and start afresh")
    p.add_argument("--no-progress", action="store_true")
    return p


def parse_columns(items: list[str]) -> dict[str, str]:
    from nemo_r1.console import parse_columns as parse

    return parse(items, "nemo-r1 eval")


def main(args: argparse.Namespace | list[str] | None = None) -> int:
    argv: list[str]
    if args is None:
        argv = sys.argv[1:]
    elif isinstance(args, argparse.Namespace):
        argv = list(args.rest)
    else:
        argv = list(args)
    if argv[:1] == ["--"]:  # `nemo-r1 eval -- --model ...` (argparse REMAINDER keeps the separator)
        argv = argv[1:]
    ns = build_parser().parse_args(argv)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
    from nemo_r1.embedded import resolve_model_arg
    from nemo_r1.eval.benchmarks import DataError

    model = resolve_model_arg(ns.model)
    benches = [b.strip() for b in ns.benchmarks.split(",") if b.strip()] if ns.benchmarks else None
    common: dict[str, Any] = dict(n=ns.n, temperature=ns.temperature, top_p=ns.top_p,
                                  max_new_tokens=ns.max_new_tokens, seed=ns.seed, out_dir=ns.out, limit=ns.limit,
                                  system_prompt=ns.system_prompt, max_model_len=ns.max_model_len)
    from nemo_r1.rollout.cli import engine_section

    section = engine_section(ns)  # --config/--set: the rollout section; the flags below override it
    try:
        if ns.backend == "lighteval":
            from nemo_r1.eval.lighteval_bridge import evaluate_lighteval

            evaluate_lighteval(model, tasks=benches or ["aime24", "math_500"], tp=ns.tp, max_batch=ns.max_batch,
                               kv_cache_gib=ns.kv_cache_gib, engine_config=section, **common)
        else:
            from nemo_r1.eval.runner import evaluate

            evaluate(model, benchmarks=benches, data=ns.data, columns=parse_columns(ns.columns),
                     backend=ns.backend, dp=ns.dp, tp=ns.tp, chat_template=ns.chat_template,
                     max_batch=ns.max_batch, hf_batch_size=ns.hf_batch_size, kv_cache_gib=ns.kv_cache_gib,
                     engine_config=section, overwrite=ns.overwrite,
                     progress=not ns.no_progress, **common)
    except DataError as e:
        print(f"nemo-r1 eval: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
