"""Prompt templates: system prompts, the boxed-answer instruction, and chat templates.

The prompt is built as chat messages, then rendered with the model's chat template (or an
override). Overrides matter for R1-style training: R1-Distill templates end the generation prompt
with `<think>\\n`, so the completion begins inside the thinking block; `chatml_think` does the same
for ChatML models (SmolLM2, Qwen), and the `format` reward knows to look at the prompt for it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

R1_SYSTEM_PROMPT = (
    "A conversation between User and Assistant. The user asks a question, and the Assistant solves it. "
    "The assistant first thinks about the reasoning process in the mind and then provides the user with "
    "the answer. The reasoning process and answer are enclosed within <think> </think> and "
    "<answer> </answer> tags, respectively, i.e., <think> reasoning process here </think> "
    "<answer> answer here </answer>."
)
"""The DeepSeek-R1 paper's R1-Zero instruction, used as a system prompt."""

BOXED_SUFFIX = "Please reason step by step, and put your final answer within \\boxed{}."

_CHATML = (
    "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
CHAT_TEMPLATES = {
    "chatml": _CHATML,
    # ChatML whose generation prompt prefills the opening think tag (as R1-Distill templates do).
    "chatml_think": _CHATML.replace("'<|im_start|>assistant\\n'", "'<|im_start|>assistant\\n<think>\\n'"),
    # R1-Zero's plain-text template for base models: system text, then "User: ... Assistant: <think>".
    "r1_zero": (
        "{% for m in messages %}{% if m['role'] == 'system' %}{{ m['content'] + '\\n' }}"
        "{% elif m['role'] == 'user' %}{{ 'User: ' + m['content'] + '\\n' }}"
        "{% else %}{{ 'Assistant: ' + m['content'] + '\\n' }}{% endif %}{% endfor %}"
        "{% if add_generation_prompt %}{{ 'Assistant: <think>' }}{% endif %}"
    ),
}


def resolve_system_prompt(system_prompt: str | None) -> str | None:
    """`r1` -> the R1 system prompt; any other string verbatim; None/empty -> no system message."""
    if not system_prompt:
        return None
    return R1_SYSTEM_PROMPT if system_prompt.strip().lower() == "r1" else system_prompt


def resolve_chat_template(chat_template: str | None) -> str | None:
    """None (the tokenizer's own), a built-in name, a path to a .jinja file, or a Jinja string."""
    if chat_template is None:
        return None
    if chat_template in CHAT_TEMPLATES:
        return CHAT_TEMPLATES[chat_template]
    if "{%" in chat_template or "{{" in chat_template:
        return chat_template
    path = Path(chat_template).expanduser()
    if path.is_file():
        return path.read_text(encoding="utf-8")
    raise ValueError(f"data.chat_template={chat_template!r} is not a built-in ({', '.join(CHAT_TEMPLATES)}), "
                     "an existing .jinja file, or a Jinja template string")


def problem_messages(problem: str, system_prompt: str | None = None, suffix: str = BOXED_SUFFIX,
                     few_shot: list[dict[str, str]] | None = None) -> list[dict[str, str]]:
    """Chat messages for one problem: optional system prompt, few-shot turns, then the problem and
    the instruction."""
    msgs = []
    system = resolve_system_prompt(system_prompt)
    if system:
        msgs.append({"role": "system", "content": system})
    for k, shot in enumerate(few_shot or []):
        if set(shot) != {"user", "assistant"}:
            raise ValueError(f"data.few_shot[{k}] must have exactly the keys user and assistant, got {sorted(shot)}")
        msgs += [{"role": "user", "content": shot["user"]}, {"role": "assistant", "content": shot["assistant"]}]
    user = problem.strip() + (f"\n\n{suffix}" if suffix else "")
    msgs.append({"role": "user", "content": user})
    return msgs


def render_prompt(messages: list[dict[str, str]], tokenizer: Any, chat_template: str | None = None) -> str:
    """The prompt text the model continues from (generation prompt included)."""
    template = resolve_chat_template(chat_template)
    if template is None and not getattr(tokenizer, "chat_template", None):
        raise ValueError("the tokenizer has no chat template; set data.chat_template (e.g. chatml or r1_zero)")
    return tokenizer.apply_chat_template(messages, chat_template=template, tokenize=False, add_generation_prompt=True)
