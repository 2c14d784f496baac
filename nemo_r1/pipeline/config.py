"""The pipeline file: stages in order, dotted overrides, `${stages.NAME.OUTPUT}` interpolation.

Why OmegaConf: the run configs already use it, and its resolver gives `${vars.x}`, `${output_dir}`,
`${stages.sft.checkpoint}` and string interpolation (`${stages.gen.dir}/x.jsonl`) for free. What
it lacks is errors that name the stage: references are checked here before anything runs (an
unknown stage, a later one, an output its kind does not have), with the file and line.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from nemo_r1.config import ConfigError
from nemo_r1.pipeline.kinds import CONFIG_KIND_KEYS, KINDS, STAGE_KEYS

TOP_KEYS = ("output_dir", "vars", "stages")
NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
REF = re.compile(r"\$\{\s*stages\.([^.}\s]+)(?:\.([^.}\s\[]+))?")


class PipelineError(ConfigError):
    """A problem with the pipeline file or its stages that the user can fix (file, line, stage named)."""


@dataclass
class Stage:
    """One stage as written: its options keep their `${...}` until the stage is about to run."""

    name: str
    kind: str
    index: int
    """1-based position: the stage runs in output_dir/NN_name."""
    options: dict[str, Any]
    """Flag kinds: the command's options; sft/grpo: the config sections. Unresolved."""
    config: str | None = None
    nproc_per_node: int = 1
    export_hf: bool = True
    line: int | None = None

    @property
    def dirname(self) -> str:
        return f"{self.index:02d}_{self.name}"


@dataclass
class Pipeline:
    source: str
    """The pipeline file (errors name it)."""
    output_dir: Path
    stages: list[Stage]
    vars: dict[str, Any] = field(default_factory=dict)

    def where(self, stage: Stage) -> str:
        """`file:line: stage NAME`, the prefix of every error about a stage."""
        return f"{self.source}:{stage.line}: stage {stage.name}" if stage.line else f"{self.source}: stage {stage.name}"

    def stage(self, name: str) -> Stage:
        for s in self.stages:
            if s.name == name:
                return s
        raise PipelineError(f"{self.source}: no stage {name!r}{_near(name, self.names())}; stages: "
                            f"{', '.join(self.names())}")

    def names(self) -> list[str]:
        return [s.name for s in self.stages]

    def stage_dir(self, stage: Stage) -> Path:
        return self.output_dir / stage.dirname


def load_pipeline(path: str | Path, overrides: list[str] | None = None, check_options: bool = True) -> Pipeline:
    """Read the pipeline file, apply `key=value` overrides (`stages.sft.optim.lr=2e-5`), check the
    stages and their references; `check_options` also checks each stage's options against its
    command (flag names and types, the sft/grpo config schema) before anything runs."""
    source = str(path)
    data = _read_yaml(Path(path))
    lines = _stage_lines(Path(path))
    unknown = [k for k in data if k not in TOP_KEYS]
    if unknown:
        raise PipelineError(f"{source}: unknown top-level key {unknown[0]!r}{_near(unknown[0], TOP_KEYS)} "
                            f"(valid: {', '.join(TOP_KEYS)})")
    stages = _stage_mapping(data.get("stages"), source)
    tree: dict[str, Any] = {"output_dir": data.get("output_dir"), "vars": data.get("vars") or {}, "stages": stages}
    tree = apply_overrides(tree, overrides or [], source)
    if not isinstance(tree["output_dir"], str) or not tree["output_dir"].strip():
        raise PipelineError(f"{source}: set `output_dir` (where the stages run: output_dir/01_<name>, ...)")
    if not isinstance(tree["vars"], dict):
        raise PipelineError(f"{source}: `vars` must be a mapping of names to values")
    try:
        root = OmegaConf.create({"vars": tree["vars"], "output_dir": tree["output_dir"]})
        output_dir = Path(str(root.output_dir))
    except OmegaConfBaseException as e:
        raise PipelineError(f"{source}: output_dir: {_first_line(e)}") from None
    built = []
    for index, (name, spec) in enumerate(tree["stages"].items(), start=1):
        built.append(_build_stage(name, spec, index, lines.get(name), source))
    pipe = Pipeline(source=source, output_dir=output_dir.absolute(), stages=built, vars=tree["vars"])
    for stage in pipe.stages:
        check_references(pipe, stage)
    if check_options:
        from nemo_r1.pipeline.stages import check_stage

        for stage in pipe.stages:
            check_stage(pipe, stage)
    return pipe


def apply_overrides(tree: dict[str, Any], overrides: list[str], source: str) -> dict[str, Any]:
    """Dotted `key=value` on the normalised tree: `output_dir=`, `vars.NAME=`, `stages.NAME.KEY=`
    (values parsed as YAML, as the run configs' overrides are)."""
    if not overrides:
        return tree
    conf = OmegaConf.create(tree)
    for item in overrides:
        key, eq, _ = item.partition("=")
        key = key.strip()
        if not eq or not key:
            raise PipelineError(f"override {item!r} is not key=value (e.g. stages.sft.optim.lr=2e-5)")
        head, _, rest = key.partition(".")
        if head not in TOP_KEYS:
            raise PipelineError(f"override {item!r}: {head!r} is not a pipeline key{_near(head, TOP_KEYS)}; "
                                "write output_dir=..., vars.NAME=... or stages.STAGE.KEY=...")
        if head == "stages":
            stage = rest.partition(".")[0]
            if stage not in tree["stages"]:
                raise PipelineError(f"override {item!r}: no stage {stage!r}{_near(stage, list(tree['stages']))}; "
                                    f"stages: {', '.join(tree['stages'])}")
            if "." not in rest:
                raise PipelineError(f"override {item!r}: name a key of stage {stage!r}, e.g. stages.{stage}.KEY=VALUE")
        try:
            conf = OmegaConf.merge(conf, OmegaConf.from_dotlist([f"{key}={item.split('=', 1)[1]}"]))
        except OmegaConfBaseException as e:
            raise PipelineError(f"override {item!r}: {_first_line(e)}") from None
    out = OmegaConf.to_container(conf, resolve=False)
    assert isinstance(out, dict)
    return out


def check_references(pipe: Pipeline, stage: Stage) -> None:
    """Every `${stages.X.Y}` in the stage names an earlier stage X and an output Y of X's kind."""
    order = {s.name: s for s in pipe.stages}
    for text in _strings(stage.options) + ([stage.config] if stage.config else []):
        for ref, out in REF.findall(text):
            if ref not in order:
                raise PipelineError(f"{pipe.where(stage)}: ${{stages.{ref}...}} names no stage{_near(ref, list(order))}; "
                                    f"stages: {', '.join(order)}")
            target = order[ref]
            if target.index >= stage.index:
                earlier = [s.name for s in pipe.stages if s.index < stage.index]
                what = "itself" if target is stage else f"stage {ref}, which runs after it"
                raise PipelineError(f"{pipe.where(stage)}: ${{stages.{ref}.{out or '...'}}} refers to {what} "
                                    f"(stage {target.index} of {len(pipe.stages)}); a stage can use the outputs of "
                                    f"earlier stages only: {', '.join(earlier) or 'none (it is the first)'}")
            outputs = KINDS[target.kind].outputs
            if not out or out not in outputs:
                raise PipelineError(f"{pipe.where(stage)}: ${{stages.{ref}.{out}}}: a {target.kind} stage has no output "
                                    f"{out!r}{_near(out, outputs)}; its outputs: {', '.join(outputs)}")


def resolve(pipe: Pipeline, stage: Stage, outputs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The stage's options with every interpolation resolved against `vars`, `output_dir` and the
    earlier stages' `outputs` (from their done markers)."""
    root = OmegaConf.create({"vars": pipe.vars, "output_dir": str(pipe.output_dir), "stages": outputs,
                             "this": {"options": stage.options, "config": stage.config}})
    try:
        resolved = OmegaConf.to_container(root.this, resolve=True)
    except OmegaConfBaseException as e:
        raise PipelineError(f"{pipe.where(stage)}: {_first_line(e)}") from None
    assert isinstance(resolved, dict)
    return resolved


# ---------------------------------------------------------------------------------- helpers


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise PipelineError(f"pipeline file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        raise PipelineError(f"{where}: invalid YAML: {getattr(e, 'problem', None) or e}") from None
    if not isinstance(data, dict):
        raise PipelineError(f"{path}: the top level must be a mapping (output_dir, vars, stages)")
    return data


def _stage_mapping(raw: Any, source: str) -> dict[str, dict[str, Any]]:
    """A list of stages (each with `name`) or a mapping name -> stage, as an ordered mapping."""
    if not raw:
        raise PipelineError(f"{source}: `stages` is empty; list the stages, e.g. "
                            "[{name: sft, kind: sft, ...}, {name: eval, kind: eval, ...}]")
    items: list[tuple[Any, Any]]
    if isinstance(raw, list):
        items = []
        for i, spec in enumerate(raw, start=1):
            if not isinstance(spec, dict) or "name" not in spec:
                raise PipelineError(f"{source}: stage {i} needs a `name` (and a `kind`), got {spec!r:.80}")
            items.append((spec["name"], {k: v for k, v in spec.items() if k != "name"}))
    elif isinstance(raw, dict):
        items = []
        for name, spec in raw.items():
            if not isinstance(spec, dict):
                raise PipelineError(f"{source}: stage {name!r} must be a mapping with a `kind`, got {spec!r:.80}")
            if "name" in spec and spec["name"] != name:
                raise PipelineError(f"{source}: stage {name!r} has name {spec['name']!r}; drop one of them")
            items.append((name, {k: v for k, v in spec.items() if k != "name"}))
    else:
        raise PipelineError(f"{source}: `stages` must be a list or a mapping, got {type(raw).__name__}")
    out: dict[str, dict[str, Any]] = {}
    for name, spec in items:
        if not isinstance(name, str) or not NAME.match(name):
            raise PipelineError(f"{source}: stage name {name!r}: use letters, digits and _ (it is a directory and "
                                "an interpolation key, ${stages.NAME.data})")
        if name in out:
            raise PipelineError(f"{source}: two stages are named {name!r}; names must be unique")
        out[name] = spec
    return out


def _build_stage(name: str, spec: dict[str, Any], index: int, line: int | None, source: str) -> Stage:
    where = f"{source}:{line}: stage {name}" if line else f"{source}: stage {name}"
    kind = spec.get("kind")
    if kind not in KINDS:
        raise PipelineError(f"{where}: kind {kind!r} is not one of {', '.join(KINDS)}{_near(str(kind), KINDS)}")
    options = {k: v for k, v in spec.items() if k not in STAGE_KEYS}
    stage = Stage(name=name, kind=kind, index=index, options=options, line=line)
    if not KINDS[kind].flags:
        stage.config = options.pop("config", None)
        stage.nproc_per_node = options.pop("nproc_per_node", 1)
        stage.export_hf = options.pop("export_hf", True)
        if stage.config is not None and not isinstance(stage.config, str):
            raise PipelineError(f"{where}: `config` is a path to a {kind} config file, got {stage.config!r}")
        if not isinstance(stage.nproc_per_node, int) or stage.nproc_per_node < 1:
            raise PipelineError(f"{where}: nproc_per_node={stage.nproc_per_node!r} must be an integer >= 1")
        if not isinstance(stage.export_hf, bool):
            raise PipelineError(f"{where}: export_hf={stage.export_hf!r} must be true or false")
    else:
        misplaced = [k for k in CONFIG_KIND_KEYS if k in options and k != "config"]
        if misplaced:
            raise PipelineError(f"{where}: {misplaced[0]!r} applies to sft and grpo stages only")
    return stage


def _stage_lines(path: Path) -> dict[str, int]:
    """1-based line of each stage in the file (for errors); empty when the file is not plain YAML."""
    try:
        node = yaml.compose(path.read_text())
    except (yaml.YAMLError, OSError):
        return {}
    if not isinstance(node, yaml.MappingNode):
        return {}
    lines: dict[str, int] = {}
    for key, value in node.value:
        if key.value != "stages":
            continue
        if isinstance(value, yaml.SequenceNode):
            for item in value.value:
                if isinstance(item, yaml.MappingNode):
                    for k, v in item.value:
                        if k.value == "name" and isinstance(v, yaml.ScalarNode):
                            lines[v.value] = item.start_mark.line + 1
        elif isinstance(value, yaml.MappingNode):
            for k, _ in value.value:
                lines[k.value] = k.start_mark.line + 1
    return lines


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list | tuple):
        return [s for v in value for s in _strings(v)]
    return []


def _near(word: str, choices: Any) -> str:
    near = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=0.6)
    return f" (did you mean {near[0]!r}?)" if near else ""


def _first_line(e: BaseException) -> str:
    lines = [x for x in str(e).splitlines() if x.strip()]
    return lines[0].strip() if lines else type(e).__name__
