"""`nemo-r1 generate ...`: flags -> `generate()` / `merge()`; and the engine flags eval shares.

The engine comes from the same `rollout` section GRPO reads (`--config run.yaml`, `--set
rollout.kv_cache_gib=4`), with a few common keys as flags; sampling defaults are open-r1's trace
generation settings (T 0.6, top_p 0.95).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from nemo_r1.rollout.base import RolloutConfig


def add_engine_args(p: argparse.ArgumentParser) -> None:
    """The engine flags eval and generate share: `--config`/`--set` (the `rollout` section of a run
    config, so one section configures GRPO's, eval's and generate's engines alike) and the common
    keys as flags, which override it (None = the section's, else the command's default)."""
    p.add_argument("--tp", type=int, default=None, help="tensor parallel size of each engine (GPU; default 1)")
    p.add_argument("--max-model-len", type=int, default=None, help="context length (default: the model's)")
    p.add_argument("--kv-cache-gib", type=float, default=None,
                   help="CPU vLLM KV cache per engine in GiB (default: eval 2, generate the rollout section's 1)")
    p.add_argument("--config", default=None, help="a run config (YAML); its `rollout` section configures the engine")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="rollout.KEY=VALUE",
                   help="override a key of the rollout section, e.g. --set rollout.kv_cache_gib=4 (repeatable)")


def engine_section(ns: argparse.Namespace, **flags: Any) -> RolloutConfig | None:
    """The `rollout` section from --config/--set, then the given flags that are not None; None
    when nothing was given (the command's own defaults apply)."""
    from dataclasses import replace

    given = {k: v for k, v in flags.items() if v is not None}
    if ns.config is None and not ns.overrides and not given:
        return None
    bad = [o for o in ns.overrides if not o.startswith("rollout.")]
    if bad:
        raise SystemExit(f"--set {bad[0]!r}: only rollout.* keys configure the engine")
    from nemo_r1.config import load_config

    return replace(load_config(ns.config, list(ns.overrides)).rollout, **given)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="nemo-r1 generate",
        description="n completions per problem with the rollout engine: seeded per sample, written as they "
                    "finish, resumable after a kill, shardable (--shard i/k, then `nemo-r1 generate merge --out DIR`).")
    p.add_argument("--model", required=True, help="HF checkpoint dir (or hub name on a cluster), or embedded:smollm2; "
                                                  "export a Megatron checkpoint with `nemo-r1 convert` first")
    p.add_argument("--data", required=True, help="jsonl/json/parquet file, a dataset folder, or hf:owner/name[:config][@split]")
    p.add_argument("--columns", nargs="*", default=[], metavar="KEY=COLUMN",
                   help="problem=<column> (the text sent), id=<column> (the row key; default: its index)")
    p.add_argument("--n", type=int, default=1, help="samples per problem")
    p.add_argument("--out", required=True, help="output dir (a rerun resumes there)")
    p.add_argument("--temperature", type=float, default=0.6)
    p.add_argument("--top-p", type=float, default=0.95)
    p.add_argument("--top-k", type=int, default=-1)
    p.add_argument("--max-new-tokens", type=int, default=4096)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--system-prompt", default=None, help="`r1` (the R1-Zero system prompt) or any text")
    p.add_argument("--chat-template", default=None,
                   help="default: the tokenizer's; chatml, chatml_think, r1_zero, a .jinja file, or `none` (raw text)")
    p.add_argument("--no-instruction", action="store_true",
                   help="send the problem alone, without the \\boxed{} answer instruction")
    p.add_argument("--few-shot", default=None, metavar="FILE|task:NAME",
                   help="worked examples before each problem: a JSON/YAML list of {user, assistant} turns, or "
                        "task:NAME for a generated task's own (e.g. task:arithmetic)")
    p.add_argument("--shard", default=None, metavar="i/k", help="only rows with index %% k == i (job arrays)")
    p.add_argument("--dp", type=int, default=1, help="data-parallel engines (processes)")
    p.add_argument("--max-batch", type=int, default=256, help="sequences in flight per engine")
    p.add_argument("--backend", choices=["vllm", "hf"], default=None, help="default: the rollout section's (vllm)")
    add_engine_args(p)
    p.add_argument("--overwrite", action="store_true", help="delete the generations in --out (all shards) first")
    p.add_argument("--no-progress", action="store_true")
    return p


def load_few_shot(source: str | None) -> list[dict[str, str]]:
    """`--few-shot`: a file holding a list of {user, assistant} turns, or `task:NAME` for the turns
    a generated task's recipes use."""
    if not source:
        return []
    if source.startswith("task:"):
        from nemo_r1.data.tasks import TASKS

        return [dict(t) for t in TASKS.get(source.split(":", 1)[1]).few_shot]
    import yaml

    path = Path(source)
    if not path.is_file():
        raise ValueError(f"--few-shot {source}: no such file (a JSON/YAML list of {{user, assistant}} turns, "
                         "or task:NAME)")
    turns = yaml.safe_load(path.read_text())
    if not isinstance(turns, list) or not all(isinstance(t, dict) and set(t) == {"user", "assistant"} for t in turns):
        raise ValueError(f"--few-shot {source}: expected a list of turns with exactly the keys user and assistant")
    return [{"user": str(t["user"]), "assistant": str(t["assistant"])} for t in turns]


def merge_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="nemo-r1 generate merge",
                                description="join the finished shards in --out into generations.jsonl")
    p.add_argument("--out", required=True)
    return p


def generate_main(args: argparse.Namespace | list[str] | None = None) -> int:
    from nemo_r1.console import raw_argv
    from nemo_r1.rollout.generate import GenerateError, GenerateSettings, generate, merge, parse_shard

    argv = raw_argv(args)
    try:
        if argv[:1] == ["merge"]:
            ns = merge_parser().parse_args(argv[1:])
            info = merge(ns.out)
            print(f"merged {info['shards']} shards: {info['samples']} samples -> {ns.out}/{info['file']}")
            return 0
        ns = build_parser().parse_args(argv)
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
        from nemo_r1.console import parse_columns
        from nemo_r1.embedded import resolve_model_arg

        if ns.n < 1:
            raise GenerateError(f"--n {ns.n}: need at least 1 sample per problem")
        settings = GenerateSettings(
            model=resolve_model_arg(ns.model), data=ns.data, n=ns.n, temperature=ns.temperature, top_p=ns.top_p,
            top_k=ns.top_k, max_new_tokens=ns.max_new_tokens, seed=ns.seed, system_prompt=ns.system_prompt,
            chat_template=ns.chat_template, instruction=not ns.no_instruction,
            columns=parse_columns(ns.columns, "nemo-r1 generate"), few_shot=load_few_shot(ns.few_shot))
        settings.sampling()  # bad sampling values fail before the engine starts
        section = engine_section(ns, backend=ns.backend, tensor_parallel_size=ns.tp, max_model_len=ns.max_model_len,
                                 kv_cache_gib=ns.kv_cache_gib)
        info = generate(settings, ns.out, engine_config=section, shard=parse_shard(ns.shard) if ns.shard else None,
                        dp=ns.dp, max_batch=ns.max_batch, overwrite=ns.overwrite, progress=not ns.no_progress)
    except (GenerateError, ValueError) as e:
        print(f"nemo-r1 generate: {e}", file=sys.stderr)
        return 2
    rate = f", {info['traces_per_s']:.2f} traces/s, {info['tokens_per_s']:.0f} tokens/s" if info["traces_per_s"] else ""
    print(f"{info['samples']} samples of {info['problems']} problems in {ns.out}/{info['file']} "
          f"({info['generated_samples']} generated now{rate})")
    return 0


if __name__ == "__main__":
    sys.exit(generate_main())
