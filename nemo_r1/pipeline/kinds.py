"""The stage kinds: which nemo-r1 command each runs, what it exposes to later stages, what the
pipeline owns. One table, so a new kind is one entry (plus its command line in `stages.py`)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Kind:
    """One stage kind: a nemo-r1 subcommand run in the stage's directory."""

    command: str
    flags: bool
    """True: the command takes flags (`--max-new-tokens 16` <- `max_new_tokens: 16`); False: a run
    config (`--config` file + YAML sections, as `nemo-r1 sft` takes)."""
    outputs: tuple[str, ...]
    """What `${stages.NAME.OUTPUT}` may name (`dir` is every stage's directory)."""
    owned: tuple[str, ...]
    """Options (flag kinds) or dotted config keys (config kinds) the pipeline sets itself."""
    doc: str


KINDS: dict[str, Kind] = {
    "generate": Kind("generate", True, ("dir", "data", "problems"), ("out", "shard", "overwrite"),
                     "n samples per problem (data: generations.jsonl; problems: its input rows)"),
    "filter": Kind("filter", True, ("dir", "data", "dropped", "report"), ("out", "dropped", "report"),
                   "keep the traces worth distilling (data: kept.jsonl)"),
    "decontaminate": Kind("decontaminate", True, ("dir", "data", "report"), ("out", "report"),
                          "drop rows that copy a benchmark problem (data: clean.jsonl)"),
    "sft": Kind("sft", False, ("dir", "checkpoint", "mcore_checkpoint", "output_dir", "metrics"),
                ("output_dir", "train.resume"), "supervised fine-tuning (checkpoint: the final weights as an HF dir)"),
    "grpo": Kind("grpo", False, ("dir", "checkpoint", "mcore_checkpoint", "output_dir", "metrics"),
                 ("output_dir", "train.resume"), "GRPO (checkpoint: the final weights as an HF dir)"),
    "eval": Kind("eval", True, ("dir", "results", "scores"), ("out", "overwrite"),
                 "pass@k on benchmarks or a data file (scores: benchmark -> pass@1)"),
    "convert": Kind("convert", True, ("dir", "checkpoint"), ("out",),
                    "HF <-> Megatron (direction: hf-to-mcore | mcore-to-hf; checkpoint: the converted dir)"),
}

STAGE_KEYS = ("name", "kind")
"""Keys every stage has besides its options."""
CONFIG_KIND_KEYS = ("config", "nproc_per_node", "export_hf")
"""Keys of sft/grpo stages that are not config sections: the base config file, ranks per node
(> 1 starts the command under torch.distributed.run, for GPUs in a single-task job) and whether the
final checkpoint is exported to an HF dir (`checkpoint`; false: `checkpoint` is the Megatron one)."""
