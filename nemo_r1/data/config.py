"""Data settings, one small dataclass the config tree composes as its `data` section."""

from __future__ import annotations

from dataclasses import dataclass, field

FORMATS = ("problem", "messages", "prompt_completion", "text")


@dataclass
class DataConfig:
    train: str = ""
    """jsonl/json/parquet file or dataset folder (relative paths: the working directory, then the
    checkout), or a hub dataset `hf:owner/name[:config][@split]` (needs a connected machine or a
    datasets cache that holds it)."""
    eval: str = ""
    """Optional held-out set in the same format (or `generated:NAME:heldout`): SFT reports its loss,
    GRPO its greedy rewards before and after training (`grpo.eval_problems`)."""
    split: str = "train"
    """Split of an `hf:` source or dataset folder when the source does not name one."""
    format: str = "problem"
    """`problem` (prompt + gold answer), `messages` (chat SFT, loss on assistant turns),
    `prompt_completion` (SFT, loss on the completion), or `text` (plain LM, loss on every token)."""
    columns: dict[str, str] = field(default_factory=dict)
    """Rename columns to the names the format expects, target: source, e.g. {problem: question}."""
    system_prompt: str | None = None
    """`r1` for the DeepSeek-R1 system prompt, any other string verbatim, null for none. For
    `messages` data it is put first in conversations that have no system message."""
    prompt_suffix: str = "Please reason step by step, and put your final answer within \\boxed{}."
    """Appended to each problem (after a blank line); empty for none."""
    few_shot: list[dict[str, str]] = field(default_factory=list)
    """Example exchanges put before each problem as earlier chat turns, [{user: ..., assistant: ...}];
    small models copy an answer format from one or two examples far more reliably than from an
    instruction (see nemo_r1.data.tasks)."""
    chat_template: str | None = None
    """None = the model's own; a built-in name (`chatml`, `chatml_think`, `r1_zero`), a .jinja path,
    or a Jinja string. `chatml_think` prefills `<think>` like the R1-Distill templates do."""
    skip_bad_rows: bool = False
    """Skip and count malformed rows instead of failing on the first one."""
    max_samples: int | None = None
    """Use only the first N good rows."""
    decontaminate: list[str] = field(default_factory=list)
    """Benchmarks whose problems must not be trained on: training rows sharing one (exact, or any
    8-gram of words) are dropped and counted. `all` = every bundled benchmark."""

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise ValueError(f"data.format={self.format!r} is not one of {list(FORMATS)}")
        if self.decontaminate:
            from nemo_r1.data.decontam import resolve_benchmarks

            resolve_benchmarks(self.decontaminate)  # an unknown name fails here, naming the key
        if self.max_samples is not None and self.max_samples < 1:
            raise ValueError(f"data.max_samples must be >= 1 or null, got {self.max_samples}")
