"""`nemo-r1` command line: each subcommand parses its flags and calls one importable function.

Heavy imports (torch, megatron, vllm) happen inside the handlers so `nemo-r1 --help` and config
errors are instant. HANDLERS also holds planned commands (a cluster recipe already names `sft`):
`--help` and the dispatch list only those whose module exists in this build, so a command
appears by itself once its module lands. An error inside a run reaches the user as one line.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nemo_r1.config import ConfigError


@dataclass(frozen=True)
class Command:
    """One subcommand: where its handler lives and how its flags are parsed."""

    module: str
    function: str
    help: str
    args: str = "raw"
    """`config`: --config FILE, dotted overrides and --verbose; `raw`: the handler parses its own
    argv (argparse.REMAINDER would reject an option right after the command); `custom`: flags are
    declared in `build_parser`."""


# The function takes the parsed args (for `raw`: a Namespace with `rest`) and returns an exit code.
HANDLERS: dict[str, Command] = {
    "sft": Command("nemo_r1.trainers.sft", "main", "supervised fine-tuning (distillation) of a Megatron model",
                   "config"),
    "grpo": Command("nemo_r1.trainers.grpo", "main", "GRPO on verifiable rewards with colocated vLLM rollouts",
                    "config"),
    "demo": Command("nemo_r1.demo", "main", "the main job on the embedded default model (what `make demo` runs)",
                    "config"),
    "eval": Command("nemo_r1.eval.cli", "main", "pass@k on reasoning benchmarks"),
    "generate": Command("nemo_r1.rollout.cli", "generate_main", "generate completions with the rollout engine"),
    "filter": Command("nemo_r1.data.filter", "main", "filter generated traces (math-verify, pass rate)"),
    "decontaminate": Command("nemo_r1.data.decontaminate", "main", "8-gram decontamination against benchmarks"),
    "data": Command("nemo_r1.data.stats", "main", "dataset statistics: counts, token lengths, pass rates, a PNG"),
    "convert": Command("nemo_r1.models.cli", "convert_main", "HF <-> Megatron checkpoints", "custom"),
    "pipeline": Command("nemo_r1.pipeline.run", "main", "the R1 stages (generate ... eval) as one resumable run"),
    "launch": Command("launchers.cli", "launch_main", "run a subcommand under submitit (local or Slurm)"),
    "plan": Command("launchers.plan", "plan_main", "per-GPU memory estimate and layout advice"),
    "bench": Command("nemo_r1.bench", "main", "benchmarks: train | rollout | rewards | grpo | eval | sft"),
    "plot": Command("nemo_r1.cli", "plot_main", "draw metrics.jsonl curves (or a pipeline's evals) to OUTPUT_DIR/plots/*.png", "custom"),
}


def module_exists(dotted: str) -> bool:
    """Whether a module's file is in this build, found without importing it or its packages."""
    top, *rest = dotted.split(".")
    spec = importlib.util.find_spec(top)
    if spec is None:
        return False
    if not rest:
        return True
    for root in spec.submodule_search_locations or []:
        base = Path(root).joinpath(*rest)
        if base.with_suffix(".py").is_file() or (base / "__init__.py").is_file():
            return True
    return False


def built() -> dict[str, Command]:
    """The commands whose handler module exists, in HANDLERS order."""
    return {name: c for name, c in HANDLERS.items() if module_exists(c.module)}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="nemo-r1", description="R1 recipe on Megatron-core + colocated vLLM")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, c in built().items():
        if c.args == "config":
            s = sub.add_parser(name, help=c.help, description=f"{c.help}. Overrides: dotted key=value, "
                               "e.g. train.max_steps=10 optim.lr=1e-5 'rewards=[{name: accuracy}]'.")
            s.add_argument("--config", "-c", help="YAML config (may use `defaults: [base.yaml]`)")
            s.add_argument("--verbose", "-v", action="store_true",
                           help="show every library message and the traceback of an error")
            s.add_argument("overrides", nargs="*", help="dotted key=value overrides")
        elif c.args == "raw":
            s = sub.add_parser(name, help=c.help, add_help=False)
            s.add_argument("rest", nargs=argparse.REMAINDER)
        elif name == "convert":
            s = sub.add_parser(name, help=c.help)
            csub = s.add_subparsers(dest="direction", required=True)
            h2m = csub.add_parser("hf-to-mcore", help="HF dir -> Megatron dist checkpoint")
            h2m.add_argument("--hf", required=True, help="HF checkpoint dir (or embedded:smollm2)")
            h2m.add_argument("--out", required=True)
            h2m.add_argument("--tp", type=int, default=1)
            h2m.add_argument("--pp", type=int, default=1)
            m2h = csub.add_parser("mcore-to-hf", help="Megatron dist checkpoint -> HF safetensors dir")
            m2h.add_argument("--ckpt", required=True)
            m2h.add_argument("--out", required=True)
        elif name == "plot":
            s = sub.add_parser(name, help=c.help)
            s.add_argument("output_dir")
            s.add_argument("--keys", nargs="*", default=None, help="only these metric keys")
            s.add_argument("--smooth", type=int, default=1, help="moving-average window")
    return p


def resolve(command: str) -> Callable[[argparse.Namespace], Any]:
    """The handler function of a built subcommand."""
    c = HANDLERS[command]
    return getattr(importlib.import_module(c.module), c.function)


def plot_main(args: argparse.Namespace) -> int:
    from nemo_r1.plot import plot_eval_stages, plot_metrics

    if (Path(args.output_dir) / "summary.json").exists():  # a pipeline's dir: its eval stages
        print(plot_eval_stages(args.output_dir))
        return 0
    for path in plot_metrics(args.output_dir, keys=args.keys, smooth=args.smooth):
        print(path)
    return 0


def error_line(e: BaseException) -> str:
    """One line a user can act on.

    A failed rank carries its own one-line `summary`; our own error types (ConfigError, DataError,
    ...) and missing files already name the file/key, so their message stands alone; anything
    else keeps its type name, which a bare message (a KeyError's `'x'`) needs to be understood."""
    summary = getattr(e, "summary", None)
    if isinstance(summary, str) and summary:
        return summary
    lines = [line for line in str(e).splitlines() if line.strip()]
    text = lines[0].strip() if lines else ""
    if isinstance(e, ConfigError):
        return f"config error: {text}"
    if text and (type(e).__module__.startswith("nemo_r1.") or isinstance(e, FileNotFoundError | NotADirectoryError)):
        return text
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def main(argv: list[str] | None = None, raise_errors: bool = False) -> int:
    """Entry point of the console script: an error ends in one line and a non-zero exit code.

    `raise_errors` lets an in-process caller (a launcher's task) get the exception itself, to
    report it with the job."""
    from nemo_r1 import console

    argv = list(sys.argv[1:] if argv is None else argv)
    available = built()
    if argv and argv[0] in HANDLERS and argv[0] not in available:
        print(f"nemo-r1: `{argv[0]}` is not part of this build yet (no module {HANDLERS[argv[0]].module}); "
              f"commands: {', '.join(available)}", file=sys.stderr)
        return 2
    if argv and argv[0] in available and available[argv[0]].args == "raw":
        args = argparse.Namespace(command=argv[0], rest=argv[1:])
    else:
        args = build_parser().parse_args(argv)
    verbose = console.setup(True if getattr(args, "verbose", False) else None)
    try:
        rc = resolve(args.command)(args)
    except KeyboardInterrupt:
        print("nemo-r1: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # one line naming the file/key; the traceback only on request
        if raise_errors:
            raise
        if verbose:
            traceback.print_exc()
        hint = "" if verbose or isinstance(e, ConfigError) else (
            " (--verbose shows the traceback)" if hasattr(args, "verbose")
            else f" ({console.VERBOSE_ENV}=1 shows the traceback)")
        print(f"nemo-r1: {error_line(e)}{hint}", file=sys.stderr, flush=True)
        return 2 if isinstance(e, ConfigError) else 1
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
