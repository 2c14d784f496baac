"""Build data/examples/filter_traces.jsonl: 60 traces that exercise every `nemo-r1 filter` reason.

Deterministic (no model, no randomness): problems 0-8 of data/gsm8k_train.jsonl, completions written
from each problem's own worked rationale in R1 style (`<think>` ... `</think>` then a boxed answer),
varied by hand-picked kinds. 7 problems have 8 samples each with 8, 0, 1, 4, 5, 4 and 3 correct
(pass rates 1, 0, .125, .5, .625, .5, .375); 2 more have an unparseable gold (`---`, `\\frac{3}{`)
and 2 samples each. Run: `.venv/bin/python tools/make_filter_example.py` (rewrites the file).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "data" / "examples" / "filter_traces.jsonl"

# Sample kinds per problem (index into gsm8k_train), and the gold override for broken rows.
PLAN: list[tuple[int, list[str], str | None]] = [
    (0, ["correct"] * 8, None),
    (1, ["wrong"] * 5 + ["no_answer", "no_answer", "bad_answer"], None),
    (2, ["correct", "wrong", "wrong", "wrong", "wrong", "no_answer", "truncated", "wrong"], None),
    (3, ["correct", "correct", "unclosed", "wrong", "wrong", "truncated", "no_answer", "multi_boxed"], None),
    (4, ["correct", "correct", "correct", "long", "truncated_boxed", "wrong", "wrong", "no_answer"], None),
    (5, ["correct", "long", "multi_boxed", "wrong", "wrong", "wrong", "truncated", "unclosed"], None),
    (6, ["correct", "correct", "wrong", "wrong", "wrong", "wrong", "wrong", "truncated_boxed"], None),
    (7, ["correct", "wrong"], "---"),
    (8, ["correct", "no_answer"], "\\frac{3}{"),
]


def rationale(answer: str) -> tuple[list[str], str]:
    """GSM8K's worked steps (calculator notes removed) and its final number."""
    body, _, final = answer.partition("####")
    steps = [re.sub(r"<<[^>]*>>", "", line).strip() for line in body.strip().splitlines() if line.strip()]
    return steps, final.strip().replace(",", "")


def completion(kind: str, steps: list[str], gold: str, j: int) -> tuple[str, str]:
    """(completion text, finish_reason) of one sample kind."""
    think = "\n".join(steps)
    wrong = str(int(gold) + j + 1)
    if kind == "correct":
        return f"<think>\nLet me work it out.\n{think}\n</think>\nThe answer is $\\boxed{{{gold}}}$.", "stop"
    if kind == "wrong":
        return f"<think>\n{steps[0]}\nSo the total is {wrong}.\n</think>\nThe answer is $\\boxed{{{wrong}}}$.", "stop"
    if kind == "no_answer":
        return f"<think>\n{think}\n</think>\nThe answer is {gold}.", "stop"
    if kind == "bad_answer":
        return f"<think>\n{steps[0]}\nI am not sure.\n</think>\nThe answer is $\\boxed{{?}}$.", "stop"
    if kind == "unclosed":
        return f"<think>\n{think}\nSo the answer is $\\boxed{{{gold}}}$.", "stop"
    if kind == "truncated":
        return f"<think>\n{think}\nWait, let me double-check each step. {steps[0]}", "length"
    if kind == "truncated_boxed":
        return f"<think>\n{think}\nA first guess: $\\boxed{{{gold}}}$, but let me verify that {steps[0]}", "length"
    if kind == "multi_boxed":
        return (f"<think>\n{think}\n</think>\nFirst, $\\boxed{{{gold}}}$. Checking again: "
                f"$\\boxed{{{gold}}}$.", "stop")
    if kind == "long":
        recheck = "\n".join(f"Re-check {k + 1}: {line}" for k in range(12) for line in steps)
        return f"<think>\n{think}\n{recheck}\n</think>\nThe answer is $\\boxed{{{gold}}}$.", "stop"
    raise ValueError(kind)


def build() -> list[dict[str, object]]:
    source = [json.loads(line) for line in (ROOT / "data" / "gsm8k_train.jsonl").open(encoding="utf-8")]
    rows = []
    for index, kinds, gold_override in PLAN:
        steps, gold = rationale(source[index]["answer"])
        for j, kind in enumerate(kinds):
            text, finish = completion(kind, steps, gold, j)
            rows.append({"id": f"gsm8k-train-{index}", "sample": j, "problem": source[index]["question"],
                         "answer": gold if gold_override is None else gold_override, "completion": text,
                         "finish_reason": finish, "kind": kind})
    return rows


def main() -> None:
    OUT.parent.mkdir(parents=True, exist_ok=True)
    rows = build()
    OUT.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    print(f"wrote {len(rows)} rows to {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
