"""Rows -> training examples for the four formats.

- `problem`: a rendered prompt plus the gold answer and every other column (rewards read them).
  For SFT (`targets=True`) the row's worked `solution` becomes the assistant turn after that same
  prompt, ending in `\\boxed{answer}`: the student learns the exact format eval and GRPO ask for.
- `messages`: chat SFT, token ids with a loss mask that is 1 only on assistant turns.
- `prompt_completion`: SFT on raw text pairs, loss on the completion (and the EOS after it).
- `text`: plain language modelling, loss on every token.

Assistant-only masks: HF's `return_assistant_tokens_mask` needs `{% generation %}` markers that
most chat templates (SmolLM2's included) lack, so the spans are found by rendering the
conversation up to each assistant turn: the text added by that turn (its content and end-of-turn
tokens) is the part to learn; tokens are then marked through the tokenizer's character offsets.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from nemo_r1.data.config import DataConfig
from nemo_r1.data.decontam import decontaminate_rows
from nemo_r1.data.loading import DataError, Rows, load_rows
from nemo_r1.data.templates import problem_messages, render_prompt, resolve_chat_template


@dataclass
class Examples:
    examples: list[dict[str, Any]]
    source: str
    skipped: int = 0


def problem_example(row: dict[str, Any], cfg: DataConfig, tokenizer: Any | None) -> dict[str, Any]:
    msgs = problem_messages(row["problem"], cfg.system_prompt, cfg.prompt_suffix, cfg.few_shot)
    prompt = render_prompt(msgs, tokenizer, cfg.chat_template) if tokenizer is not None else None
    out = {**row, "prompt_messages": msgs, "prompt": prompt}
    if "answer" in row:  # code problems have tests instead
        out["answer"] = str(row["answer"]).strip()
    return out


_CALCULATOR_NOTE = re.compile(r"<<[^<>]*>>")


def solution_target(row: dict[str, Any]) -> str:
    """The worked solution as a boxed-answer completion: GSM8K's `<<48/2=24>>` calculator notes go
    (nothing a model should imitate), and a solution without `\\boxed{}` gets its gold answer boxed
    at the end."""
    text = _CALCULATOR_NOTE.sub("", str(row["solution"])).strip()
    if "\\boxed{" not in text:
        text += f"\nThe final answer is \\boxed{{{str(row['answer']).strip()}}}."
    return text


def problem_sft_example(row: dict[str, Any], cfg: DataConfig, tokenizer: Any, max_len: int | None,
                        where: str = "a problem row") -> dict[str, Any]:
    """A problem row as an SFT document: the prompt `problem_example` renders, then the solution."""
    if not isinstance(row.get("solution"), str) or not row["solution"].strip():
        raise DataError(f"{where} has no `solution` to learn from (columns {sorted(row)}); SFT on "
                        "data.format=problem needs worked solutions (map one with data.columns, e.g. {solution: <name>})")
    msgs = problem_messages(row["problem"], cfg.system_prompt, cfg.prompt_suffix, cfg.few_shot)
    msgs.append({"role": "assistant", "content": solution_target(row)})
    return {**row, **tokenize_messages(msgs, tokenizer, cfg.chat_template, max_len)}


def _assistant_spans(messages: list[dict[str, str]], tokenizer: Any, template: str | None) -> tuple[str, list[tuple[int, int]]]:
    full = tokenizer.apply_chat_template(messages, chat_template=template, tokenize=False)
    spans = []
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        before = tokenizer.apply_chat_template(messages[:i], chat_template=template, tokenize=False,
                                               add_generation_prompt=True) if i else ""
        upto = tokenizer.apply_chat_template(messages[:i + 1], chat_template=template, tokenize=False)
        if not full.startswith(upto) or not upto.startswith(before):
            raise ValueError("the chat template renders earlier turns differently once later turns follow "
                             "(e.g. it drops <think> from past assistant turns), so assistant spans cannot be "
                             "located; set data.chat_template to a template without that rewriting")
        spans.append((len(before), len(upto)))
    return full, spans


def tokenize_messages(messages: list[dict[str, str]], tokenizer: Any, chat_template: str | None = None,
                      max_len: int | None = None) -> dict[str, list[int]]:
    """`input_ids` and `loss_mask` (1 on assistant content and its end-of-turn tokens, else 0)."""
    template = resolve_chat_template(chat_template)
    text, spans = _assistant_spans(messages, tokenizer, template)
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = enc["input_ids"], enc["offset_mapping"]
    mask = [int(any(s <= a and b <= e and b > a for s, e in spans)) for a, b in offsets]
    if max_len is not None:
        ids, mask = ids[:max_len], mask[:max_len]
    return {"input_ids": list(ids), "loss_mask": mask}


def tokenize_text(text: str, tokenizer: Any, max_len: int | None = None, add_eos: bool = True) -> dict[str, list[int]]:
    ids = list(tokenizer(text, add_special_tokens=False)["input_ids"])
    if add_eos and tokenizer.eos_token_id is not None:
        ids.append(tokenizer.eos_token_id)
    if max_len is not None:
        ids = ids[:max_len]
    return {"input_ids": ids, "loss_mask": [1] * len(ids)}


def tokenize_prompt_completion(prompt: str, completion: str, tokenizer: Any, max_len: int | None = None,
                               add_eos: bool = True) -> dict[str, list[int]]:
    """Prompt and completion tokenized apart and joined, so the mask boundary is exact even where
    joint tokenization would merge characters across it; the completion ends with EOS."""
    p = list(tokenizer(prompt, add_special_tokens=False)["input_ids"])
    c = list(tokenizer(completion, add_special_tokens=False)["input_ids"])
    if add_eos and tokenizer.eos_token_id is not None:
        c.append(tokenizer.eos_token_id)
    ids, mask = p + c, [0] * len(p) + [1] * len(c)
    if max_len is not None:
        ids, mask = ids[:max_len], mask[:max_len]
    return {"input_ids": ids, "loss_mask": mask}


def with_system_prompt(messages: list[dict[str, str]], system_prompt: str | None) -> list[dict[str, str]]:
    """`messages` with the configured system prompt first, unless the conversation has its own."""
    from nemo_r1.data.templates import resolve_system_prompt

    system = resolve_system_prompt(system_prompt)
    if not system or (messages and messages[0]["role"] == "system"):
        return messages
    return [{"role": "system", "content": system}, *messages]


def build_examples(rows: Rows, cfg: DataConfig, tokenizer: Any | None = None, max_len: int | None = None,
                   targets: bool = False) -> Examples:
    """Examples of `cfg.format` from loaded rows; every format but `problem` needs a tokenizer.

    targets: build SFT documents (token ids + loss mask); `problem` rows then learn their solution."""
    if cfg.format == "problem" and targets:
        if tokenizer is None:
            raise ValueError("SFT on data.format='problem' needs a tokenizer")
        out = [problem_sft_example(r, cfg, tokenizer, max_len, f"{rows.source} row {i + 1}")
               for i, r in enumerate(rows.rows)]
    elif cfg.format == "problem":
        out = [problem_example(r, cfg, tokenizer) for r in rows.rows]
    else:
        if tokenizer is None:
            raise ValueError(f"data.format={cfg.format!r} needs a tokenizer")
        if cfg.format == "messages":
            out = [{**r, **tokenize_messages(with_system_prompt(r["messages"], cfg.system_prompt), tokenizer,
                                             cfg.chat_template, max_len)} for r in rows.rows]
        elif cfg.format == "prompt_completion":
            out = [{**r, **tokenize_prompt_completion(r["prompt"], r["completion"], tokenizer, max_len)}
                   for r in rows.rows]
        else:
            out = [{**r, **tokenize_text(r["text"], tokenizer, max_len)} for r in rows.rows]
    return Examples(out, rows.source, rows.skipped)


def load_examples(cfg: DataConfig, tokenizer: Any | None = None, which: str = "train",
                  max_len: int | None = None, targets: bool = False) -> Examples:
    """Load `cfg.train` (or `cfg.eval`) and build examples: the data layer's one entry point."""
    source = cfg.train if which == "train" else cfg.eval
    if not source:
        raise ValueError(f"data.{which} is empty; set it to a .jsonl/.json/.parquet path or an HF dataset name")
    rows = load_rows(source, cfg.format, cfg.columns, cfg.split, cfg.skip_bad_rows, cfg.max_samples)
    if which == "train" and cfg.decontaminate:
        rows = decontaminate_rows(rows, cfg.decontaminate)
    return build_examples(rows, cfg, tokenizer, max_len, targets)
