"""Rows -> training examples for the four formats.

- `problem`: a rendered prompt plus the gold answer and every other column (rewards read them).
- `messages`: chat SFT, token ids with a loss mask that is 1 only on assistant turns.
- `prompt_completion`: SFT on raw text pairs, loss on the completion (and the EOS after it).
- `text`: plain language modelling, loss on every token.

Assistant-only masks: HF's `return_assistant_tokens_mask` needs `{% generation %}` markers that
most chat templates (SmolLM2's included) lack, so the spans are found by rendering the
conversation up to each assistant turn: the text added by that turn (its content and end-of-turn
tokens) is the part to learn; tokens are then marked through the tokenizer's character offsets.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from nemo_r1.data.config import DataConfig
from nemo_r1.data.decontam import decontaminate_rows
from nemo_r1.data.loading import Rows, load_rows
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


def build_examples(rows: Rows, cfg: DataConfig, tokenizer: Any | None = None, max_len: int | None = None) -> Examples:
    """Examples of `cfg.format` from loaded rows; every format but `problem` needs a tokenizer."""
    if cfg.format == "problem":
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
                  max_len: int | None = None) -> Examples:
    """Load `cfg.train` (or `cfg.eval`) and build examples: the data layer's one entry point."""
    source = cfg.train if which == "train" else cfg.eval
    if not source:
        raise ValueError(f"data.{which} is empty; set it to a .jsonl/.json/.parquet path or an HF dataset name")
    rows = load_rows(source, cfg.format, cfg.columns, cfg.split, cfg.skip_bad_rows, cfg.max_samples)
    if which == "train" and cfg.decontaminate:
        rows = decontaminate_rows(rows, cfg.decontaminate)
    return build_examples(rows, cfg, tokenizer, max_len)
