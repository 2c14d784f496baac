"""Data layer: load rows (jsonl/json/parquet/HF names), check them, and build prompts or SFT examples."""

from nemo_r1.data.config import DataConfig
from nemo_r1.data.formats import Examples, build_examples, load_examples, tokenize_messages, tokenize_text
from nemo_r1.data.loading import DataError, Rows, gsm8k_final_answer, load_rows
from nemo_r1.data.templates import (
    BOXED_SUFFIX,
    CHAT_TEMPLATES,
    R1_SYSTEM_PROMPT,
    problem_messages,
    render_prompt,
    resolve_chat_template,
)

__all__ = ["BOXED_SUFFIX", "CHAT_TEMPLATES", "DataConfig", "DataError", "Examples", "R1_SYSTEM_PROMPT", "Rows",
           "build_examples", "gsm8k_final_answer", "load_examples", "load_rows", "problem_messages",
           "render_prompt", "resolve_chat_template", "tokenize_messages", "tokenize_text"]
