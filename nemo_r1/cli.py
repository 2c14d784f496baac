"""`nemo-r1` command line: each subcommand parses its flags and calls one importable function.

Heavy imports (torch, megatron, vllm) happen inside the handlers so `nemo-r1 --help` and config
errors are instant. A subcommand whose implementation has not landed says which issue brings it.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable
from typing import Any

from nemo_r1.config import ConfigError

# subcommand -> (module, function, issue that brings it or None if not yet filed).
# The function takes the parsed args and returns an exit code.
HANDLERS: dict[str, tuple[str, str, int | None]] = {
    "sft": ("nemo_r1.trainers.sft", "main", None),
    "grpo": ("nemo_r1.trainers.grpo", "main", 7),
    "eval": ("nemo_r1.eval.cli", "main", 8),
    "generate": ("nemo_r1.rollout.cli", "generate_main", 6),
    "filter": ("nemo_r1.data.filter", "main", None),
    "decontaminate": ("nemo_r1.data.decontaminate", "main", None),
    "convert": ("nemo_r1.models.cli", "convert_main", 4),
    "launch": ("launchers.cli", "launch_main", 9),
    "plan": ("launchers.plan", "plan_main", 9),
    "bench": ("nemo_r1.bench", "main", 4),
    "plot": ("nemo_r1.cli", "plot_main", 3),
    "demo": ("nemo_r1.demo", "main", 7),
}


class NotLanded(RuntimeError):
    """The subcommand's implementation is not in this build yet."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="nemo-r1", description="R1 recipe on Megatron-core + colocated vLLM")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def with_config(name: str, help_: str) -> argparse.ArgumentParser:
        s = sub.add_parser(name, help=help_, description=f"{help_}. Overrides: dotted key=value, "
                           "e.g. train.max_steps=10 optim.lr=1e-5 'rewards=[{name: accuracy}]'.")
        s.add_argument("--config", "-c", help="YAML config (may use `defaults: [base.yaml]`)")
        s.add_argument("overrides", nargs="*", help="dotted key=value overrides")
        return s

    with_config("sft", "supervised fine-tuning (distillation) of a Megatron model")
    with_config("grpo", "GRPO on verifiable rewards with colocated vLLM rollouts")
    with_config("demo", "the main job on the embedded default model (what `make demo` runs)")

    e = sub.add_parser("eval", help="pass@k on reasoning benchmarks", add_help=False)
    e.add_argument("rest", nargs=argparse.REMAINDER)
    g = sub.add_parser("generate", help="generate completions with the rollout engine", add_help=False)
    g.add_argument("rest", nargs=argparse.REMAINDER)
    for name, help_ in [("filter", "filter generated traces (math-verify, pass rate)"),
                        ("decontaminate", "8-gram decontamination against benchmarks")]:
        s = sub.add_parser(name, help=help_, add_help=False)
        s.add_argument("rest", nargs=argparse.REMAINDER)

    c = sub.add_parser("convert", help="HF <-> Megatron checkpoints")
    csub = c.add_subparsers(dest="direction", required=True)
    h2m = csub.add_parser("hf-to-mcore", help="HF dir -> Megatron dist checkpoint")
    h2m.add_argument("--hf", required=True, help="HF checkpoint dir (or embedded:smollm2)")
    h2m.add_argument("--out", required=True)
    h2m.add_argument("--tp", type=int, default=1)
    h2m.add_argument("--pp", type=int, default=1)
    m2h = csub.add_parser("mcore-to-hf", help="Megatron dist checkpoint -> HF safetensors dir")
    m2h.add_argument("--ckpt", required=True)
    m2h.add_argument("--out", required=True)

    la = sub.add_parser("launch", help="run a subcommand under submitit (local or Slurm)", add_help=False)
    la.add_argument("rest", nargs=argparse.REMAINDER)
    pl = sub.add_parser("plan", help="per-GPU memory estimate and layout advice", add_help=False)
    pl.add_argument("rest", nargs=argparse.REMAINDER)
    b = sub.add_parser("bench", help="benchmarks: train | rollout | rewards | grpo | eval", add_help=False)
    b.add_argument("rest", nargs=argparse.REMAINDER)

    pt = sub.add_parser("plot", help="draw metrics.jsonl curves to OUTPUT_DIR/plots/*.png")
    pt.add_argument("output_dir")
    pt.add_argument("--keys", nargs="*", default=None, help="only these metric keys")
    pt.add_argument("--smooth", type=int, default=1, help="moving-average window")
    return p


def resolve(command: str) -> Callable[[argparse.Namespace], Any]:
    """The handler of a subcommand, or NotLanded naming the issue that brings it."""
    module, func, issue = HANDLERS[command]
    when = f"it arrives with issue #{issue}" if issue else "no issue schedules it yet"
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name and (e.name == module or module.startswith(e.name + ".")):
            raise NotLanded(f"`nemo-r1 {command}` is not implemented yet; {when}") from None
        raise
    if not hasattr(mod, func):
        raise NotLanded(f"`nemo-r1 {command}` is not implemented yet; {when}")
    return getattr(mod, func)


def plot_main(args: argparse.Namespace) -> int:
    from nemo_r1.plot import plot_metrics

    for path in plot_metrics(args.output_dir, keys=args.keys, smooth=args.smooth):
        print(path)
    return 0


# These parse their own flags (argparse.REMAINDER would reject an option right after the command).
RAW_ARGV = ("eval", "generate", "filter", "decontaminate", "launch", "plan", "bench")


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; also callable in-process (launchers do that)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in RAW_ARGV:
        args = argparse.Namespace(command=argv[0], rest=argv[1:])
    else:
        args = build_parser().parse_args(argv)
    try:
        handler = resolve(args.command)
        rc = handler(args)
    except NotLanded as e:
        print(f"nemo-r1: {e}", file=sys.stderr)
        return 2
    except ConfigError as e:
        print(f"nemo-r1: config error: {e}", file=sys.stderr)
        return 2
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
