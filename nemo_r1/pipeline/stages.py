"""Per kind: a stage's command line, what it reads and writes, and its headline numbers.

Flag commands (generate, filter, decontaminate, eval, convert) get their options through their own
argparse parser: a key is an option's dest (`max_new_tokens`) or long name (`set` for `--set`), and
the parser's action decides the form (a flag for true, a repeated option for `append`, one option
with several values for `nargs='*'`, positionals in order). The command line is parsed with the
same parser before anything runs, so a wrong name or type fails at once, naming the stage.
Config commands (sft, grpo) get one resolved YAML (`NN_name/stage.yaml`): the stage's `config`
file, its sections on top, then the pipeline's keys; `nemo_r1.config.load_config` checks it.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import re
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from nemo_r1.pipeline.config import Pipeline, PipelineError, Stage, _near, resolve
from nemo_r1.pipeline.kinds import KINDS
from nemo_r1.pipeline.markers import digest, flatten, relativize, write_text

GENERATED = "generated:"
DATA_KINDS = ("generate", "filter", "decontaminate", "eval")
"""Kinds whose `data` option may be a generated task, `generated:NAME[:heldout][:ROWS[:SEED]]`."""
PLACEHOLDER = "<{stage}.{output}: known once stage {stage} has run>"


@dataclass
class StagePlan:
    """Everything about a stage that is known before it runs."""

    stage: Stage
    dir: Path
    argv: list[str]
    """`nemo-r1` arguments of the main command (after `python -m nemo_r1.cli`)."""
    config: dict[str, Any]
    """Flattened resolved config, paths under output_dir relativized: what the config hash covers."""
    reads: dict[str, Any]
    """The option values that may name local input files (digested into the inputs hash)."""
    files: dict[str, str] = field(default_factory=dict)
    """Files written into the stage dir before the command runs (name -> text)."""
    generated: list[dict[str, Any]] | None = None
    """The rows of a `generated:` data option, written to problems.jsonl."""
    problems: str | None = None


# ---------------------------------------------------------------------------------- planning


def plan_stage(pipe: Pipeline, stage: Stage, resolved: dict[str, Any]) -> StagePlan:
    """The stage's command line and config, from its resolved options (nothing is written)."""
    d = pipe.stage_dir(stage)
    options = dict(resolved["options"])
    if KINDS[stage.kind].flags:
        return _plan_flags(pipe, stage, options, d)
    return _plan_config(pipe, stage, options, resolved.get("config"), d)


def check_stage(pipe: Pipeline, stage: Stage) -> None:
    """Plan the stage against placeholder outputs of the earlier stages: option names, types and
    the sft/grpo config schema fail here, before the first stage runs."""
    outputs = {s.name: outputs_of(pipe, s, None) for s in pipe.stages if s.index < stage.index}
    try:
        resolved = resolve(pipe, stage, outputs)
    except PipelineError as e:
        if ".scores." in str(e):  # an eval's scores (benchmark -> pass@1) are known once it has run
            return
        raise
    plan_stage(pipe, stage, resolved)


def child_command(plan: StagePlan) -> list[str]:
    """The process to start: `python -m nemo_r1.cli ...`, or under torch.distributed.run."""
    n = plan.stage.nproc_per_node
    if n > 1:
        return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={n}",
                "-m", "nemo_r1.cli", *plan.argv]
    return [sys.executable, "-m", "nemo_r1.cli", *plan.argv]


def prepare(plan: StagePlan) -> None:
    """Write the stage's inputs into its dir (resolved config, generated problems)."""
    plan.dir.mkdir(parents=True, exist_ok=True)
    for name, text in plan.files.items():
        write_text(plan.dir / name, text)
    if plan.generated is not None:
        write_text(plan.dir / "problems.jsonl", "".join(json.dumps(r) + "\n" for r in plan.generated))


def follow_up(plan: StagePlan) -> list[str] | None:
    """A second command after the main one: sft/grpo export their last checkpoint to `hf/`."""
    if KINDS[plan.stage.kind].flags or not plan.stage.export_hf:
        return None
    ckpt = latest_step_dir(plan.dir)
    if ckpt is None:
        raise PipelineError(f"stage {plan.stage.name}: {plan.stage.kind} finished without a checkpoint in "
                            f"{plan.dir / 'checkpoints'} (checkpoint.save_final=false?); set export_hf: false or "
                            "keep the final checkpoint")
    return ["convert", "mcore-to-hf", "--ckpt", str(ckpt), "--out", str(plan.dir / "hf")]


def outputs_of(pipe: Pipeline, stage: Stage, plan: StagePlan | None) -> dict[str, Any]:
    """What `${stages.NAME.*}` resolves to. Without a plan (checking a config before the earlier
    stages ran) outputs that exist only after the run are placeholders."""
    d = pipe.stage_dir(stage)
    later = {o: PLACEHOLDER.format(stage=stage.name, output=o) for o in KINDS[stage.kind].outputs}
    out: dict[str, Any] = {"dir": str(d)}
    if stage.kind == "generate":
        out |= {"data": str(d / "generations.jsonl"),
                "problems": plan.problems if plan is not None else later["problems"]}
    elif stage.kind == "filter":
        out |= {"data": str(d / "kept.jsonl"), "dropped": str(d / "kept.dropped.jsonl"),
                "report": str(d / "kept.report.json")}
    elif stage.kind == "decontaminate":
        out |= {"data": str(d / "clean.jsonl"), "report": str(d / "clean.report.json")}
    elif stage.kind in ("sft", "grpo"):
        step_dir = latest_step_dir(d) if plan is not None else None
        mcore = str(step_dir) if step_dir is not None else later["mcore_checkpoint"]
        out |= {"checkpoint": str(d / "hf") if stage.export_hf else mcore, "mcore_checkpoint": mcore,
                "output_dir": str(d), "metrics": str(d / "metrics.jsonl")}
    elif stage.kind == "eval":
        out |= {"results": str(d / "results.json"), "scores": _scores(d) if plan is not None else {}}
    elif stage.kind == "convert":
        out |= {"checkpoint": str(d / "model")}
    return out


# ---------------------------------------------------------------------------------- flag commands


def command_parser(kind: str, options: dict[str, Any]) -> argparse.ArgumentParser:
    """The command's own argparse parser (for convert: the parser of the chosen direction)."""
    if kind == "generate":
        from nemo_r1.rollout.cli import build_parser
    elif kind == "eval":
        from nemo_r1.eval.cli import build_parser
    elif kind == "filter":
        from nemo_r1.data.filter import build_parser
    elif kind == "decontaminate":
        from nemo_r1.data.decontaminate import build_parser
    elif kind == "convert":
        from nemo_r1.cli import build_parser as top

        # the convert flags live in the top-level parser's subparsers; argparse has no public way in
        convert = _subparsers(top()).choices["convert"]
        return _subparsers(convert).choices[options["direction"]]
    else:
        raise AssertionError(kind)
    return build_parser()


def _plan_flags(pipe: Pipeline, stage: Stage, options: dict[str, Any], d: Path) -> StagePlan:
    where = pipe.where(stage)
    kind = KINDS[stage.kind]
    prefix: list[str] = [kind.command]
    if stage.kind == "convert":
        direction = options.pop("direction", None)
        if direction not in ("hf-to-mcore", "mcore-to-hf"):
            raise PipelineError(f"{where}: a convert stage needs direction: hf-to-mcore or mcore-to-hf, got {direction!r}")
        prefix.append(direction)
        options = {"direction": direction, **options}
    parser = command_parser(stage.kind, options)
    table = _action_table(parser)
    for key in options:
        if key in kind.owned or key.replace("-", "_") in kind.owned:
            raise PipelineError(f"{where}: `{key}` is set by the pipeline ({_owned_note(stage.kind)}); remove it")
    if "no_progress" in table and "no_progress" not in options:
        options["no_progress"] = True  # bars are for terminals; the stage log gets their \r lines otherwise
    hashed = dict(options)
    generated, rows, problems = None, None, options.get("data") if stage.kind == "generate" else None
    if stage.kind in DATA_KINDS and isinstance(options.get("data"), str) and options["data"].startswith(GENERATED):
        from nemo_r1.data.tasks import task_rows

        generated = parse_generated(options["data"], where)
        name, split, n, seed = generated
        rows = task_rows(name, n, seed, split)  # drawn now: their digest joins the hash (a generator may change)
        hashed["data_rows"] = digest(rows)
        problems = options["data"] = str(d / "problems.jsonl")
    positional: list[str] = []
    flags: list[str] = []
    for key, value in options.items():
        if key == "direction" and stage.kind == "convert":
            continue
        action = table.get(key) or table.get(key.replace("-", "_"))
        if action is None:
            valid = sorted({a.dest for a in table.values()} - set(kind.owned))
            raise PipelineError(f"{where}: `nemo-r1 {kind.command}` has no option {key!r}{_near(key, valid)}; "
                                f"options: {', '.join(valid)}")
        args = _to_argv(action, value, where, key)
        (flags if action.option_strings else positional).extend(args)
    out_flag = {"generate": ["--out", str(d)], "eval": ["--out", str(d)],
                "filter": ["--out", str(d / "kept.jsonl")], "decontaminate": ["--out", str(d / "clean.jsonl")],
                "convert": ["--out", str(d / "model")]}[stage.kind]
    argv_tail = positional + flags + out_flag
    _parse_check(parser, argv_tail, where, kind.command)
    return StagePlan(stage=stage, dir=d, argv=prefix + argv_tail,
                     config=relativize(flatten({"kind": stage.kind, **hashed}), pipe.output_dir), reads=options,
                     generated=rows, problems=problems)


def parse_generated(text: str, where: str) -> tuple[str, str, int, int]:
    """`generated:NAME[:heldout][:ROWS[:SEED]]` -> (task, split, rows, seed). Without ROWS, the rows
    a run's `generated:NAME[:heldout]` source holds (the task registry's default); SEED defaults to 0."""
    from nemo_r1.data.tasks import default_rows, parse_source

    name, *rest = text[len(GENERATED):].split(":")
    split = rest.pop(0) if rest and not rest[0].lstrip("-").isdigit() else "train"
    try:
        name, split = parse_source(f"{GENERATED}{name}" + (f":{split}" if split != "train" else ""))
    except ValueError as e:
        raise PipelineError(f"{where}: data {text!r}: {e}") from None
    try:
        rows = int(rest[0]) if rest else default_rows(name, split)
        seed = int(rest[1]) if len(rest) > 1 else 0
        if rows < 1 or len(rest) > 2:
            raise ValueError
    except ValueError:
        raise PipelineError(f"{where}: data {text!r}: write generated:NAME[:heldout][:ROWS[:SEED]], e.g. "
                            f"generated:{name}:64 or generated:{name}:heldout:50:1") from None
    return name, split, rows, seed


def _to_argv(action: argparse.Action, value: Any, where: str, key: str) -> list[str]:
    flag = next((s for s in action.option_strings if s.startswith("--")), None) or (
        action.option_strings[0] if action.option_strings else None)
    if isinstance(value, dict):
        value = [f"{k}={v}" for k, v in value.items()]
    if action.nargs == 0:  # store_true / store_false / store_const
        if not isinstance(value, bool):
            raise PipelineError(f"{where}: `{key}` is a switch ({flag}); write true or false, got {value!r}")
        return [flag] if value and flag else []
    if value is None:
        return []
    items = [_fmt(v) for v in value] if isinstance(value, list | tuple) else [_fmt(value)]
    if flag is None:
        return items
    if isinstance(action, argparse._AppendAction):
        return [x for item in items for x in (flag, item)]
    if action.nargs in ("*", "+") or isinstance(action.nargs, int):
        return [flag, *items]
    if isinstance(value, list | tuple):
        raise PipelineError(f"{where}: `{key}` ({flag}) takes one value, got the list {value!r}")
    return [flag, items[0]]


def _fmt(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def _action_table(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    table: dict[str, argparse.Action] = {}
    for a in parser._actions:  # argparse keeps its actions here; there is no public accessor
        if isinstance(a, argparse._HelpAction | argparse._SubParsersAction):
            continue
        names = [a.dest] + [s.lstrip("-").replace("-", "_") for s in a.option_strings if s.startswith("--")]
        for n in names:
            table.setdefault(n, a)
    return table


def _subparsers(parser: argparse.ArgumentParser) -> Any:
    for a in parser._actions:
        if isinstance(a, argparse._SubParsersAction):
            return a
    raise AssertionError("parser without subcommands")


class _ParseFailed(Exception):
    pass


def _parse_check(parser: argparse.ArgumentParser, argv: list[str], where: str, command: str) -> None:
    """Parse the command line with the command's parser, turning its exit into a stage error."""

    def fail(message: str) -> None:
        raise _ParseFailed(message)

    parser.error = fail  # type: ignore[method-assign]  # a fresh parser per call: nothing else sees this
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            parser.parse_args(argv)
    except _ParseFailed as e:
        raise PipelineError(f"{where}: `nemo-r1 {command}` rejects the options: {e}") from None


def _owned_note(kind: str) -> str:
    return {"generate": "--out is the stage dir; generations.jsonl is ${stages.NAME.data}",
            "eval": "--out is the stage dir", "filter": "--out is kept.jsonl in the stage dir",
            "decontaminate": "--out is clean.jsonl in the stage dir", "convert": "--out is model/ in the stage dir",
            }.get(kind, "output_dir is the stage dir and train.resume is auto")


# ---------------------------------------------------------------------------------- config commands


def _plan_config(pipe: Pipeline, stage: Stage, sections: dict[str, Any], config: str | None, d: Path) -> StagePlan:
    from nemo_r1.config import ConfigError, load_config, to_dict

    where = pipe.where(stage)
    flat = flatten(sections)
    for key in KINDS[stage.kind].owned:
        if key in flat or key in sections:
            raise PipelineError(f"{where}: `{key}` is set by the pipeline ({_owned_note(stage.kind)}); remove it")
    layer: dict[str, Any] = json.loads(json.dumps(sections))  # a deep copy
    if config is not None:
        path = Path(config)
        if not path.is_file() and (Path(pipe.source).parent / config).is_file():
            path = Path(pipe.source).parent / config  # relative to the pipeline file, as a fallback
        if not path.is_file():
            raise PipelineError(f"{where}: config file {config} does not exist (relative paths are read from the "
                                "working directory, then from the pipeline file's folder)")
        layer["defaults"] = [str(path.absolute())]
    layer["output_dir"] = str(d)
    train = layer.setdefault("train", {})
    if not isinstance(train, dict):
        raise PipelineError(f"{where}: `train` must be a mapping of train.* keys")
    train["resume"] = "auto"
    with tempfile.TemporaryDirectory(prefix="nemo-r1-pipeline-") as tmp:
        file = Path(tmp) / f"{stage.name}.yaml"
        file.write_text(yaml.safe_dump(layer, sort_keys=False))
        try:
            cfg = load_config(file)
        except ConfigError as e:
            text = re.sub(re.escape(str(file)) + r"(:\d+)*", "its sections", str(e))
            raise PipelineError(f"{where}: {text}") from None
    from omegaconf import OmegaConf

    from nemo_r1.config import Config

    resolved = to_dict(cfg)
    # The hash covers the values that differ from the schema's defaults: what the config file and
    # the stage chose. A nemo-r1 update that adds a config key then leaves finished stages finished.
    defaults = flatten(to_dict(Config()))
    chosen = {k: v for k, v in flatten(resolved).items() if k not in defaults or defaults[k] != v}
    return StagePlan(stage=stage, dir=d, argv=[stage.kind, "--config", str(d / "stage.yaml")],
                     config=relativize({"kind": stage.kind, "config_file": config, **chosen,
                                        "nproc_per_node": stage.nproc_per_node, "export_hf": stage.export_hf},
                                       pipe.output_dir),
                     reads={"config": config, **resolved},
                     files={"stage.yaml": OmegaConf.to_yaml(OmegaConf.structured(cfg))})


def latest_step_dir(run_dir: Path) -> Path | None:
    """The highest complete `checkpoints/step_N` (the files `nemo_r1.models.checkpoint` writes last).
    Kept here instead of importing that module, which pulls megatron-core into the pipeline process."""
    root = run_dir / "checkpoints"
    best: tuple[int, Path] | None = None
    if root.is_dir():
        for p in root.iterdir():
            m = re.fullmatch(r"step_(\d+)", p.name)
            if m and (p / "nemo_r1.json").exists() and (p / "metadata.json").exists():
                if best is None or int(m.group(1)) > best[0]:
                    best = (int(m.group(1)), p)
    return best[1] if best else None


# ---------------------------------------------------------------------------------- headline numbers


def numbers_of(plan: StagePlan) -> dict[str, Any]:
    """The few numbers the summary shows for a finished stage, read from the files it wrote."""
    d, kind = plan.dir, plan.stage.kind
    if kind == "generate":
        rows = [json.loads(x) for x in (d / "generations.jsonl").read_text().splitlines() if x.strip()]
        tokens = [r.get("completion_tokens", 0) for r in rows]
        return {"problems": len({r.get("id") for r in rows}), "samples": len(rows),
                "stopped": sum(r.get("finish_reason") == "stop" for r in rows),
                "mean_completion_tokens": round(sum(tokens) / len(tokens), 4) if tokens else 0.0}
    if kind in ("filter", "decontaminate"):
        name = "kept" if kind == "filter" else "clean"
        counts = json.loads((d / f"{name}.report.json").read_text())["counts"]
        return {"kept": counts["kept"], "total": counts["input"]}
    if kind in ("sft", "grpo"):
        last: dict[str, Any] = {}
        metrics = d / "metrics.jsonl"
        if metrics.exists():
            for line in metrics.read_text().splitlines():
                if line.strip():
                    last.update(json.loads(line))  # the latest value of every key
        keys = ("train/loss", "eval/loss") if kind == "sft" else ("reward/mean", "train/loss", "train/kl")
        return {"step": last.get("step"), **{k: last[k] for k in keys if k in last}}
    if kind == "eval":
        results = json.loads((d / "results.json").read_text())
        out: dict[str, Any] = {}
        for bench, r in results["benchmarks"].items():
            for key in ("pass@1", "stderr", "problems", "n", "extraction_failure_rate", "mean_length"):
                if key in r:
                    out[f"{bench}/{key}"] = r[key]
        return out
    return {}


def headline(kind: str, numbers: dict[str, Any]) -> str:
    """One line of the summary table."""
    if not numbers:
        return ""
    if kind == "generate":
        return (f"{numbers['samples']} samples of {numbers['problems']} problems, {numbers['stopped']} stopped, "
                f"mean {numbers['mean_completion_tokens']:.1f} tokens")
    if kind in ("filter", "decontaminate"):
        return f"kept {numbers['kept']}/{numbers['total']}"
    if kind in ("sft", "grpo"):
        keys = [k for k in ("reward/mean", "train/loss", "eval/loss") if k in numbers]
        return ", ".join(f"{k} {numbers[k]:.4f}" for k in keys) + f" (step {numbers.get('step')})"
    if kind == "eval":
        benches = sorted({k.rsplit("/", 1)[0] for k in numbers})
        parts = []
        for b in benches:
            p, se = numbers.get(f"{b}/pass@1"), numbers.get(f"{b}/stderr")
            parts.append(f"{b} pass@1 {p:.3f} ± {se:.3f}" if p is not None and se is not None else f"{b} pass@1 -")
        return ", ".join(parts)
    return ""


def _scores(d: Path) -> dict[str, Any]:
    path = d / "results.json"
    if not path.exists():
        return {}
    return {b: r.get("pass@1") for b, r in json.loads(path.read_text())["benchmarks"].items()}
