"""`nemo-r1 launch [options] -- <subcommand and its overrides>`: run a nemo-r1 command under submitit.

Every task calls `nemo_r1.cli.main(argv)` in its own process (no shell strings); options can
come from a recipe YAML (configs/cluster/*.yaml: a `launch:` mapping of LaunchOptions fields and
a `command:` list) and flags override the recipe. Arrays: `--array N` runs N shards with
`{shard}`/`{num_shards}` substituted in the command; `--sweep a,b,c` / `--sweep-glob PATTERN`
runs one shard per value with `{value}`/`{value_name}` (its basename) substituted.
"""

from __future__ import annotations

import argparse
import glob
import re
import sys
from dataclasses import fields
from pathlib import Path
from typing import Any

import submitit
import yaml

from launchers.launch import LaunchOptions, gather, launch, launch_array
from launchers.task import CliEntry


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="nemo-r1 launch",
        usage="nemo-r1 launch [options] -- <subcommand> [its arguments and overrides]",
        description="Run a nemo-r1 subcommand on Slurm (multi-node) or locally through submitit; every task "
                    "gets RANK/WORLD_SIZE/LOCAL_RANK/MASTER_ADDR/MASTER_PORT and passes a startup health check.")
    p.add_argument("--recipe", help="configs/cluster/*.yaml with `launch:` options and a `command:`")
    p.add_argument("--executor", choices=["slurm", "local"])
    p.add_argument("--nodes", type=int)
    p.add_argument("--tasks-per-node", type=int, help="processes per node (one per GPU for training)")
    p.add_argument("--gpus-per-node", type=int)
    p.add_argument("--cpus-per-task", type=int)
    p.add_argument("--mem-gb", type=float)
    p.add_argument("--partition")
    p.add_argument("--account")
    p.add_argument("--qos")
    p.add_argument("--time", help="minutes or [D-]HH:MM[:SS]")
    p.add_argument("--job-name")
    p.add_argument("--log-dir", help="submitit folder for pickles and per-task logs (shared storage)")
    p.add_argument("--health-timeout", type=float, dest="health_timeout_s")
    p.add_argument("--signal-delay", type=int, dest="signal_delay_s", help="seconds before the limit to checkpoint")
    p.add_argument("--max-requeues", type=int)
    p.add_argument("--setup", action="append", help="shell line run before srun (repeatable)")
    p.add_argument("--env", action="append", metavar="KEY=VALUE", help="variable set in every task (repeatable)")
    p.add_argument("--slurm-opt", action="append", metavar="KEY=VALUE", help="extra sbatch option (repeatable)")
    arr = p.add_mutually_exclusive_group()
    arr.add_argument("--array", type=int, metavar="N", help="N shards; {shard} {num_shards} in the command")
    arr.add_argument("--sweep", help="comma list (or @file, one per line): a shard per value; {value} {value_name}")
    arr.add_argument("--sweep-glob", help="a shard per matching path (sorted by the number in it), e.g. "
                     "'run/checkpoints/step_*'")
    p.add_argument("--array-parallelism", type=int, help="at most this many shards at once")
    p.add_argument("--no-wait", action="store_true", help="submit and exit (print job ids and log paths)")
    return p


def _kv(items: list[str] | None, flag: str) -> dict[str, str]:
    out = {}
    for it in items or []:
        if "=" not in it:
            raise SystemExit(f"nemo-r1 launch: {flag} expects KEY=VALUE, got {it!r}")
        k, v = it.split("=", 1)
        out[k.strip()] = v
    return out


def load_recipe(path: str | Path) -> tuple[dict[str, Any], list[str], dict[str, Any]]:
    """(launch options, command, sweep spec) of a configs/cluster recipe, with clear errors."""
    p = Path(path)
    if not p.exists():
        raise SystemExit(f"nemo-r1 launch: recipe {p} does not exist")
    data = yaml.safe_load(p.read_text()) or {}
    unknown = set(data) - {"launch", "command", "sweep", "sweep_glob", "array"}
    if unknown:
        raise SystemExit(f"nemo-r1 launch: {p}: unknown top-level keys {sorted(unknown)} "
                         "(valid: launch, command, sweep, sweep_glob, array)")
    opts = data.get("launch") or {}
    valid = {f.name for f in fields(LaunchOptions)}
    bad = set(opts) - valid
    if bad:
        raise SystemExit(f"nemo-r1 launch: {p}: unknown launch options {sorted(bad)} (valid: {', '.join(sorted(valid))})")
    cmd = data.get("command") or []
    if not isinstance(cmd, list) or not all(isinstance(c, (str, int, float)) for c in cmd):
        raise SystemExit(f"nemo-r1 launch: {p}: `command` must be a list of strings, e.g. [grpo, --config, x.yaml]")
    sweep = {k: data[k] for k in ("sweep", "sweep_glob", "array") if k in data}
    return opts, [str(c) for c in cmd], sweep


def split_argv(argv: list[str]) -> tuple[list[str], list[str]]:
    """Launcher options before `--`, the subcommand after it."""
    if "--" in argv:
        i = argv.index("--")
        return argv[:i], argv[i + 1:]
    return argv, []


def options_from(ns: argparse.Namespace, recipe_opts: dict[str, Any]) -> LaunchOptions:
    opts = LaunchOptions(**recipe_opts)
    for f in fields(LaunchOptions):
        flag = getattr(ns, f.name, None)
        if flag is not None and f.name not in ("env", "slurm_extra", "setup"):
            setattr(opts, f.name, flag)
    opts.env.update(_kv(ns.env, "--env"))
    opts.slurm_extra.update(_kv(ns.slurm_opt, "--slurm-opt"))
    if ns.setup:
        opts.setup = list(opts.setup) + ns.setup
    return opts


def _step_key(path: str) -> tuple[int, str]:
    nums = re.findall(r"\d+", Path(path).name)
    return (int(nums[-1]) if nums else -1, path)


def shard_values(ns: argparse.Namespace, sweep: dict[str, Any]) -> list[dict[str, str]] | None:
    """Placeholder values per shard, or None for a single job."""
    array = ns.array if ns.array is not None else sweep.get("array")
    values: list[str] | None = None
    if ns.sweep or "sweep" in sweep:
        raw = ns.sweep if ns.sweep else sweep["sweep"]
        if isinstance(raw, str) and raw.startswith("@"):
            values = [ln.strip() for ln in Path(raw[1:]).read_text().splitlines() if ln.strip()]
        else:
            values = [str(v) for v in raw] if isinstance(raw, list) else [v for v in raw.split(",") if v]
    elif ns.sweep_glob or "sweep_glob" in sweep:
        pattern = ns.sweep_glob or sweep["sweep_glob"]
        values = sorted(glob.glob(pattern), key=_step_key)
        if not values:
            raise SystemExit(f"nemo-r1 launch: --sweep-glob {pattern!r} matches nothing")
    if values is not None:
        return [{"shard": str(i), "num_shards": str(len(values)), "value": v, "value_name": Path(v.rstrip("/")).name}
                for i, v in enumerate(values)]
    if array is not None:
        if int(array) < 1:
            raise SystemExit(f"nemo-r1 launch: --array {array} must be >= 1")
        return [{"shard": str(i), "num_shards": str(array)} for i in range(int(array))]
    return None


def substitute(argv: list[str], values: dict[str, str]) -> list[str]:
    """Replace {shard}, {num_shards}, {value}, {value_name} in each argument (other braces stay)."""
    out = []
    for a in argv:
        for k, v in values.items():
            a = a.replace("{" + k + "}", v)
        out.append(a)
    return out


def submit_command(opts: LaunchOptions, sub_argv: list[str],
                   shards: list[dict[str, str]] | None = None) -> list[submitit.Job]:
    """Submit `nemo-r1 <sub_argv>` as one job, or one array shard per placeholder set."""
    if not sub_argv:
        raise SystemExit("nemo-r1 launch: no command after `--` (e.g. `-- grpo --config configs/grpo/x.yaml`)")
    if shards is None:
        job = launch(opts, CliEntry(sub_argv))
        print(f"[launch] submitted job {job.job_id} ({opts.executor}, {opts.nodes} node(s) x {opts.tasks_per_node} "
              f"task(s)): nemo-r1 {' '.join(sub_argv)}\n  logs: {_log(job.paths.stdout)} (.err beside it)")
        return [job]
    jobs = launch_array(opts, [(CliEntry(substitute(sub_argv, v)), (), {}) for v in shards])
    for v, job in zip(shards, jobs, strict=True):
        print(f"[launch] shard {v['shard']}: job {job.job_id}: nemo-r1 {' '.join(substitute(sub_argv, v))}")
    return jobs


def _log(p: Path) -> str:
    return str(p).replace("%t", "0")


def report(jobs: list[submitit.Job], progress: bool = True) -> int:
    """Wait for the jobs, print the outcome (tracebacks and log paths of failures); exit code."""
    result = gather(jobs, progress=progress and len(jobs) > 1)
    if len(jobs) == 1:
        if result.ok:
            print(f"[launch] job {jobs[0].job_id} finished")
            return 0
        print(result.failures[0].error, file=sys.stderr)
    print(result.summary(), file=sys.stderr if not result.ok else sys.stdout)
    return 0 if result.ok else 1


def launch_command(opts: LaunchOptions, sub_argv: list[str], shards: list[dict[str, str]] | None = None,
                   wait: bool = True) -> int:
    """Submit, then (unless wait=False) wait and report; the exit code of `nemo-r1 launch`."""
    jobs = submit_command(opts, sub_argv, shards)
    return report(jobs) if wait else 0


def launch_cli(argv: list[str]) -> int:
    """`nemo-r1 launch` from its raw argv (everything after `launch`)."""
    mine, sub_argv = split_argv(argv)
    ns = build_parser().parse_args(mine)
    recipe_opts: dict[str, Any] = {}
    sweep: dict[str, Any] = {}
    if ns.recipe:
        recipe_opts, recipe_cmd, sweep = load_recipe(ns.recipe)
        sub_argv = recipe_cmd + sub_argv  # extra args after `--` append to the recipe's command
    try:
        opts = options_from(ns, recipe_opts)
        opts.validate()
    except (TypeError, ValueError) as e:
        raise SystemExit(f"nemo-r1 launch: {e}") from None
    return launch_command(opts, sub_argv, shard_values(ns, sweep), wait=not ns.no_wait)


def launch_main(args: argparse.Namespace | list[str]) -> int:
    """Handler of `nemo-r1 launch`: its namespace carries the raw argv after `launch` in `rest`."""
    argv = list(args.rest) if isinstance(args, argparse.Namespace) else list(args)
    return launch_cli(argv)
