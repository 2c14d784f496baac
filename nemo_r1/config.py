"""One typed config tree for every command: dataclasses, loaded from YAML, overridden on the CLI.

Why OmegaConf structured configs: they give type checking and merging for free; what they lack
is errors a user can act on, so `load_config` adds the file, the line and the closest valid key.
The schema (defaults, docs) lives only here; call sites read attributes, never `.get(key, default)`.
"""

from __future__ import annotations

import difflib
import os
import tempfile
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, get_type_hints

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException, ValidationError

from nemo_r1.algorithms.loss_variants import LOSS_VARIANTS
from nemo_r1.data.config import DataConfig  # the data layer owns its section's schema
from nemo_r1.rollout.base import RolloutConfig  # one engine section for GRPO, eval and generate
from nemo_r1.schedules import Schedule, check_schedules, check_section_shape


@dataclass
class ModelConfig:
    path: str = "embedded:smollm2"
    """HF checkpoint dir, Megatron checkpoint dir, or `embedded:smollm2` (the bundled default)."""
    dtype: str = "float32"
    """Training/rollout dtype; float32 on CPU (bf16 logprobs are far off there), bfloat16 on GPU.
    bfloat16 trains with fp32 main params (megatron's mixed-precision optimizer)."""
    recompute: str = "none"
    """Activation recompute: `none` | `selective` | `full`. Trades compute for activation memory at
    long sequence lengths: `selective` recomputes core attention only, `full` every layer."""

    def __post_init__(self) -> None:
        modes = ["none", "selective", "full"]
        if self.recompute not in modes:
            raise ValueError(f"model.recompute={self.recompute!r} is not one of {modes}")


@dataclass
class ParallelConfig:
    tensor: int = 1
    """Tensor-parallel size (must divide the number of KV heads)."""
    pipeline: int = 1
    """Pipeline-parallel size (must divide the number of layers)."""
    sequence_parallel: bool = False
    """Megatron sequence parallelism (GPU, TP > 1; refused on CPU). `nemo-r1 plan --config` reads it too."""


@dataclass
class TrainConfig:
    max_steps: int = 100
    """Optimizer steps to run."""
    seed: int = 0
    """Seeds data order, init and sampling; the same seed gives the same run."""
    resume: str = "auto"
    """`auto` = latest checkpoint in output_dir, `none` = start fresh, or a checkpoint dir."""
    micro_batch_size: int = 4
    """Sequences per forward/backward pass."""
    global_batch_size: int = 16
    """Sequences per optimizer step of SFT. GRPO's step trains grpo.prompts_per_step x
    grpo.num_generations sequences and refuses a value set here that differs from that."""
    grad_clip: float = 1.0
    """Global grad-norm clip (0 disables)."""
    max_seq_len: int = 1024
    """Longest packed/padded sequence for SFT."""


@dataclass
class OptimConfig:
    """Adam + LR schedule: the `optim` section (`trainers.lifecycle.optim_settings` turns it into the
    plain `models.train.OptimSettings` that `setup_training` takes)."""

    lr: float = 1e-6
    """Peak learning rate (after warmup)."""
    min_lr: float = 0.0
    """Floor of the cosine/linear decay."""
    weight_decay: float = 0.0
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_eps: float = 1e-8
    warmup_steps: int = 0
    """Linear warmup from 0: step k (1-based) uses lr * k / warmup_steps."""
    warmup_ratio: float = 0.0
    """Warmup as a fraction of the run's total steps (open-r1's SFT uses 0.03); applies when
    warmup_steps is 0."""
    scheduler: str = "constant"
    """`constant` | `cosine` | `linear` (after warmup)."""
    decay_steps: int | None = None
    """Steps until min_lr; null = the run's total steps."""
    distributed_optimizer: bool = True
    """Shard Adam state (and the fp32 master weights) over data-parallel ranks."""

    def __post_init__(self) -> None:
        if self.scheduler not in ("cosine", "linear", "constant"):
            near = difflib.get_close_matches(str(self.scheduler), ("constant", "cosine", "linear"), n=1)
            hint = f"; did you mean {near[0]!r}?" if near else ""
            raise ValueError(f"optim.scheduler={self.scheduler!r} is not one of ['constant', 'cosine', 'linear']{hint}")
        if self.lr < 0 or self.min_lr < 0 or self.min_lr > self.lr:
            raise ValueError(f"need 0 <= optim.min_lr ({self.min_lr}) <= optim.lr ({self.lr})")
        if not 0.0 <= self.warmup_ratio < 1.0:
            raise ValueError(f"optim.warmup_ratio must be in [0, 1), got {self.warmup_ratio}")

    def warmup_for(self, total_steps: int) -> int:
        """Warmup steps of a run of `total_steps`: warmup_steps, else the ratio's share (at least 1)."""
        if self.warmup_steps or not self.warmup_ratio:
            return self.warmup_steps
        return max(1, round(self.warmup_ratio * total_steps))


@dataclass
class RewardSpec:
    name: str = "accuracy"
    """A name from `nemo_r1.rewards` (accuracy, format, tag_count, cosine, code, ...)."""
    weight: float = 1.0
    params: dict[str, Any] = field(default_factory=dict)
    """Keyword arguments of that reward function."""


@dataclass
class GRPOConfig:
    num_generations: int = 8
    """Completions per prompt (the group size G)."""
    prompts_per_step: int = 8
    """Prompts per optimizer step; the batch is prompts_per_step x num_generations."""
    loss_type: str = "dapo"
    """A key of `nemo_r1.algorithms.loss_variants.LOSS_VARIANTS`: `grpo` | `bnpo` | `dr_grpo` | `dapo`."""
    advantage_scale: str = "group"
    """`group` std, `batch` std, or `none` (Dr. GRPO)."""
    leave_one_out: bool = False
    eps_low: float = 0.2
    eps_high: float = 0.28
    beta: float = 0.0
    """KL coefficient to the reference model; 0 = no reference model is loaded."""
    dual_clip: float | None = None
    tis_cap: float | None = 2.0
    """Truncated importance-sampling cap for rollout/train mismatch; null disables."""
    mu: int = 1
    """Policy iterations per batch of rollouts."""
    dynamic_sampling: bool = False
    """Drop groups whose rewards are all equal and refill (DAPO)."""
    max_refill_rounds: int = 2
    overlong_filter: bool = False
    """Mask completions cut by max_new_tokens."""
    skip_zero_advantage: bool = True
    """Train only the groups that carry gradient: a group whose advantages are all 0 (equal rewards)
    or whose samples are all masked adds exactly 0 to the gradient when beta == 0 and the loss is
    normalised by global counts (dapo, grpo, dr_grpo), so its forward/backward is skipped. The
    update is the same up to fp32 summation order; token metrics cover the trained groups."""
    share_prompt: bool = True
    """Train each group as one row, its prompt once (trainers/shared_prompt.py): same gradients,
    fewer tokens. CPU (local attention spec) only for now; GPU runs use one row per sample."""
    samples_every: int = 10
    """Write sample completions to samples.jsonl every N steps (0 = never)."""
    eval_problems: int = 200
    """With `data.eval` set: its first N problems are answered greedily and scored by the run's
    rewards before step 1 and after the last step (output_dir/heldout.json)."""


@dataclass
class SFTConfig:
    """What only `nemo-r1 sft` reads; the batch, steps and sequence length are in `train`."""

    epochs: int = 0
    """Passes over the packed training set; 0 = run `train.max_steps` steps instead."""
    packing: bool = True
    """Pack documents into `train.max_seq_len` rows (best-fit-decreasing over the epoch, block-
    causal attention per document); false = one document per row, padded per micro-batch."""
    overlong: str = "truncate"
    """A document longer than `train.max_seq_len`: `truncate` it or `drop` it (both counted)."""
    eval_every: int = 0
    """Loss on `data.eval` every N steps and at the end (0 = never)."""

    def __post_init__(self) -> None:
        if self.overlong not in ("truncate", "drop"):
            raise ValueError(f"sft.overlong={self.overlong!r} is not one of ['truncate', 'drop']")
        if self.epochs < 0 or self.eval_every < 0:
            raise ValueError("sft.epochs and sft.eval_every must be >= 0")


@dataclass
class CheckpointConfig:
    every: int = 0
    """Save every N steps (0 = only at the end and on SIGTERM)."""
    keep: int = 2
    """Checkpoints to keep (oldest deleted first); 0 keeps all."""
    save_final: bool = True


@dataclass
class LoggingConfig:
    tensorboard: bool = True
    wandb: bool = False
    """Log to Weights & Biases too (only if `wandb` is installed)."""
    wandb_project: str = "nemo-r1"
    plots: bool = False
    """Draw metric curves to output_dir/plots at the end of the run."""


@dataclass
class Config:
    output_dir: str = "outputs/run"
    """Everything a run writes goes here: config.yaml, metrics.jsonl, checkpoints/, plots/."""
    model: ModelConfig = field(default_factory=ModelConfig)
    parallel: ParallelConfig = field(default_factory=ParallelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    data: DataConfig = field(default_factory=DataConfig)
    rewards: list[RewardSpec] = field(default_factory=lambda: [RewardSpec()])
    grpo: GRPOConfig = field(default_factory=GRPOConfig)
    sft: SFTConfig = field(default_factory=SFTConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    schedules: dict[str, Schedule] = field(default_factory=dict)
    """Scalar values that change inside a GRPO run, by step: {dotted key: {steps, values, interp}},
    e.g. {rollout.max_new_tokens: {steps: [0, 500], values: [8192, 16384]}} (nemo_r1/schedules.py)."""


class ConfigError(ValueError):
    """A config problem a user can fix: names the key, the file (and line), and a suggestion."""


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Schema defaults <- YAML chain (`defaults: [base.yaml]`, parents first) <- `key=value` overrides."""
    cfg = OmegaConf.structured(Config)
    given: set[str] = set()
    if path is not None:
        for layer_path, layer in _yaml_chain(Path(path), seen=()):
            cfg = _merge(cfg, layer, source=str(layer_path), yaml_path=layer_path)
            given.update(_flat_keys(layer))
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not key=value (e.g. train.max_steps=10)")
        key, value = item.split("=", 1)
        given.add(key.strip())
        _check_key(key.strip(), source=f"command-line override {item!r}")
        try:
            layer = OmegaConf.from_dotlist([f"{key.strip()}={value}"])
            _check_schedules_shape(OmegaConf.to_container(layer), f"command-line override {item!r}")
            cfg = OmegaConf.merge(cfg, layer)
        except OmegaConfBaseException as e:
            raise ConfigError(_explain(e, f"command-line override {item!r}")) from None
    try:
        obj = OmegaConf.to_object(cfg)  # runs each section's __post_init__ checks
    except ValueError as e:
        raise ConfigError(str(e)) from None
    assert isinstance(obj, Config)
    validate(obj)
    obj.__dict__["_given"] = frozenset(given)  # not a field: config.yaml and to_dict never see it
    return obj


def is_given(cfg: Config, key: str) -> bool:
    """Whether a YAML file or an override set `key`, as opposed to the schema default: some checks
    apply only to values a user chose (e.g. GRPO refuses a train.global_batch_size it would ignore)."""
    return key in cfg.__dict__.get("_given", ())


def validate(cfg: Config) -> None:
    """Value checks that types alone cannot express."""
    choices = {
        "grpo.loss_type": (cfg.grpo.loss_type, tuple(LOSS_VARIANTS)),
        "grpo.advantage_scale": (cfg.grpo.advantage_scale, ("group", "batch", "none")),
        "rollout.backend": (cfg.rollout.backend, ("vllm", "hf")),
    }
    for key, (value, allowed) in choices.items():
        if value not in allowed:
            near = difflib.get_close_matches(str(value), allowed, n=1)
            hint = f"; did you mean {near[0]!r}?" if near else ""
            raise ConfigError(f"{key}={value!r} is not one of {list(allowed)}{hint}")
    for key, value in {"parallel.tensor": cfg.parallel.tensor, "parallel.pipeline": cfg.parallel.pipeline,
                       "train.max_steps": cfg.train.max_steps, "grpo.num_generations": cfg.grpo.num_generations,
                       "train.micro_batch_size": cfg.train.micro_batch_size}.items():
        if value < 1:
            raise ConfigError(f"{key}={value} must be >= 1")
    if cfg.grpo.beta < 0:
        raise ConfigError(f"grpo.beta={cfg.grpo.beta} must be >= 0 (the KL weight; 0 = no reference model)")
    if cfg.train.global_batch_size % cfg.train.micro_batch_size:
        raise ConfigError(f"train.global_batch_size={cfg.train.global_batch_size} is not a multiple of "
                          f"train.micro_batch_size={cfg.train.micro_batch_size}")
    try:
        check_schedules(cfg)
    except ValueError as e:
        raise ConfigError(str(e)) from None


def save_config(cfg: Config, output_dir: str | Path) -> Path:
    """Write the resolved config atomically, so a crash never leaves a half-written config.yaml."""
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    text = OmegaConf.to_yaml(OmegaConf.structured(cfg))
    fd, tmp = tempfile.mkstemp(dir=out, prefix=".config.", suffix=".yaml")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, out / "config.yaml")
    return out / "config.yaml"


def to_dict(cfg: Config) -> dict[str, Any]:
    """Plain nested dict (for logging hyper-parameters)."""
    return OmegaConf.to_container(OmegaConf.structured(cfg))  # type: ignore[return-value]


# ---------------------------------------------------------------- YAML loading and error messages


def _yaml_chain(path: Path, seen: tuple[Path, ...]) -> list[tuple[Path, dict[str, Any]]]:
    """Expand `defaults:` (paths relative to the including file) into parent-first layers."""
    path = path.resolve()
    if not path.exists():
        raise ConfigError(f"config file {path} does not exist")
    if path in seen:
        raise ConfigError(f"config file {path} includes itself through `defaults` ({' -> '.join(map(str, seen))})")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        problem = getattr(e, "problem", None) or str(e)
        raise ConfigError(f"{where}: invalid YAML: {problem}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping of config keys, got {type(data).__name__}")
    parents = data.pop("defaults", []) or []
    if isinstance(parents, str):
        parents = [parents]
    layers: list[tuple[Path, dict[str, Any]]] = []
    for parent in parents:
        layers += _yaml_chain(path.parent / parent, seen + (path,))
    layers.append((path, data))
    return layers


def _merge(cfg: DictConfig, layer: dict[str, Any], source: str, yaml_path: Path | None = None) -> DictConfig:
    for key in _flat_keys(layer):
        _check_key(key, source=source, yaml_path=yaml_path)
    if "schedules" in layer:
        line = _line_of(yaml_path, "schedules")
        _check_schedules_shape(layer, f"{source}:{line}" if line else source)
    try:
        return OmegaConf.merge(cfg, layer)  # type: ignore[return-value]
    except OmegaConfBaseException as e:
        line = _line_of(yaml_path, str(e.full_key)) if yaml_path and getattr(e, "full_key", None) else None
        raise ConfigError(_explain(e, f"{source}:{line}" if line else source)) from None


def _flat_keys(d: dict[str, Any], prefix: str = "") -> list[str]:
    keys = []
    for k, v in d.items():
        full = f"{prefix}{k}"
        keys.append(full)
        if isinstance(v, dict) and not _is_free_dict(full):
            keys += _flat_keys(v, full + ".")
    return keys


def _schema_node(key: str) -> tuple[Any, str | None]:
    """Walk the dataclass schema along a dotted key; return (parent type, missing part or None)."""
    node: Any = Config
    for part in key.split("."):
        if part.isdigit() or not is_dataclass(node):
            return node, None  # list items and free dicts are checked by OmegaConf itself
        hints = get_type_hints(node)  # resolves the string annotations of `from __future__`
        if part not in hints:
            return node, part
        node = hints[part]
        if getattr(node, "__origin__", None) is list:
            node = node.__args__[0]
    return node, None


def _is_free_dict(key: str) -> bool:
    node, missing = _schema_node(key)
    return missing is None and getattr(node, "__origin__", None) is dict


def _check_key(key: str, source: str, yaml_path: Path | None = None) -> None:
    node, missing = _schema_node(key)
    if missing is None:
        return
    valid = [f.name for f in fields(node)]
    near = difflib.get_close_matches(missing, valid, n=1, cutoff=0.5)
    prefix = key[: len(key) - len(missing)].rstrip(".")
    suggestion = f"; did you mean {(prefix + '.' if prefix else '') + near[0]!r}?" if near else ""
    line = _line_of(yaml_path, key) if yaml_path else None
    where = f"{source}:{line}" if line else source
    raise ConfigError(f"{where}: unknown config key {key!r}{suggestion} (valid keys here: {', '.join(valid)})")


def _line_of(yaml_path: Path | None, dotted: str) -> int | None:
    """1-based line of a dotted key in a YAML file, found by walking the composed node tree."""
    if yaml_path is None:
        return None
    try:
        node = yaml.compose(yaml_path.read_text())
    except yaml.YAMLError:
        return None
    line = None
    for part in dotted.split("."):
        if not isinstance(node, yaml.MappingNode):
            break
        for k, v in node.value:
            if k.value == part:
                line, node = k.start_mark.line + 1, v
                break
        else:
            break
    return line


def _check_schedules_shape(layer: Any, where: str) -> None:
    try:
        check_section_shape(layer.get("schedules") if isinstance(layer, dict) else None, where)
    except ValueError as e:
        raise ConfigError(str(e)) from None


def _explain(e: OmegaConfBaseException, where: str) -> str:
    key = getattr(e, "full_key", "") or "?"
    msg = str(getattr(e, "msg", None) or e).splitlines()[0]
    if isinstance(e, ValidationError):
        return f"{where}: wrong type for {key!r}: {msg}"
    if isinstance(e, ConfigKeyError):
        return f"{where}: unknown config key {key!r}: {msg}"
    return f"{where}: {key}: {msg}"
