"""The LLM judge of the `judge` filter: does a completion's final answer match the gold? YES/NO.

Only for rows math-verify cannot decide (an unparseable gold or answer, no boxed answer), where a
string comparison would be wrong either way. Generation goes through the rollout engines
(`build_generator`: vLLM, or the HF backend), greedy and seeded, so a rerun judges the same.
"""

from __future__ import annotations

import re
from typing import Any

JUDGE_PROMPT = (
    "You are checking a student's answer to a math problem against the reference answer.\n\n"
    "Problem:\n{problem}\n\nReference answer:\n{gold}\n\nEnd of the student's solution:\n{tail}\n\n"
    "Does the student's final answer match the reference answer? Reply with one word: YES or NO."
)
TAIL_CHARS = 600
"""The end of the completion shown to the judge: where the final answer is."""
MAX_NEW_TOKENS = 8
_WORD = re.compile(r"\b(YES|NO)\b", re.IGNORECASE)


def judge_prompt(problem: str, gold: str, completion: str) -> str:
    """The question put to the judge (the end of the completion only, so long traces fit)."""
    if "</think>" in completion:
        completion = completion.rsplit("</think>", 1)[1]
    tail = completion.strip()[-TAIL_CHARS:]
    return JUDGE_PROMPT.format(problem=problem.strip(), gold=gold.strip() or "(empty)", tail=tail or "(empty)")


def parse_judgement(text: str) -> bool | None:
    """True for YES, False for NO (the first of the two words said), None when it said neither."""
    m = _WORD.search(text)
    return None if m is None else m.group(1).upper() == "YES"


def _engine(ctx: Any) -> tuple[Any, Any]:
    """The judge engine and its tokenizer, built once per run."""
    from transformers import AutoTokenizer

    from nemo_r1.data.filters import resolve_model

    if ctx.judge_model is None and ctx.judge_engine is None:
        raise ValueError("the judge filter needs --judge-model (an HF checkpoint dir or embedded:smollm2)")
    path = resolve_model(ctx.judge_model) if ctx.judge_model else None
    if ctx.judge_engine is None:
        from nemo_r1.rollout import RolloutConfig, build_generator

        ctx.judge_engine = build_generator(RolloutConfig(model=path, backend=ctx.judge_backend, seed=ctx.seed))
    tok = getattr(ctx.judge_engine, "tokenizer", None) or AutoTokenizer.from_pretrained(path)
    return ctx.judge_engine, tok


def ask_judge(rows: list[dict[str, Any]], ctx: Any) -> list[tuple[bool | None, str]]:
    """(YES/NO/None, the judge's raw text) per row, greedy with the run's seed."""
    engine, tok = _engine(ctx)
    prompts = []
    for row in rows:
        text = judge_prompt(ctx.text(row, "problem"), ctx.text(row, "answer"), ctx.text(row, "completion"))
        ids = tok.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True,
                                      tokenize=True)
        prompts.append(list(ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids))
    from nemo_r1.rollout.base import SamplingConfig
    from nemo_r1.rollout.parallel import Job, run_local

    jobs = [Job(key=i, prompts=[p], seeds=[ctx.seed + i], max_new_tokens=[MAX_NEW_TOKENS]) for i, p in enumerate(prompts)]
    greedy = SamplingConfig(n=1, temperature=0.0, max_new_tokens=MAX_NEW_TOKENS)
    texts = {key: outs[0].text for key, outs in run_local(engine, jobs, greedy, max_batch=256)}
    return [(parse_judgement(texts[i]), texts[i].strip()) for i in range(len(prompts))]
