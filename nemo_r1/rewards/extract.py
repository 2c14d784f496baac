"""Pull the final answer out of a completion: the last `\\boxed{...}` or `<answer>...</answer>`.

Hand-written (not math-verify's extraction regexes) because math-verify, given a whole
completion, also accepts unanchored expressions ("... so x = 3 ..." anywhere in the reasoning);
for RL that rewards answers the model never committed to. Here only an explicit final answer counts.
"""

from __future__ import annotations

import re

_BOXED = re.compile(r"\\(?:boxed|fbox)\s*")
_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
MAX_ANSWER_CHARS = 1000
"""A longer "final answer" is not an answer; it also keeps sympy away from pathological input."""


def last_boxed(text: str) -> tuple[str, int] | None:
    """Content of the last `\\boxed{...}` (balanced braces) or `\\boxed 5`, and its end offset."""
    found = None
    for m in _BOXED.finditer(text):
        i = m.end()
        if i < len(text) and text[i] == "{":
            depth, j = 0, i
            while j < len(text):
                if text[j] == "{":
                    depth += 1
                elif text[j] == "}":
                    depth -= 1
                    if depth == 0:
                        break
                j += 1
            if depth == 0:
                found = (text[i + 1:j], j + 1)
        elif m.group(0).endswith(" ") or m.group(0).endswith("\t"):
            tail = re.match(r"[^\s$]+", text[i:])
            if tail:
                found = (tail.group(0), i + tail.end())
    return found


def last_answer_tag(text: str) -> tuple[str, int] | None:
    """Content of the last `<answer>...</answer>` and its end offset."""
    matches = list(_ANSWER_TAG.finditer(text))
    if not matches:
        return None
    return matches[-1].group(1), matches[-1].end()


def extract_final_answer(text: str) -> str | None:
    """The completion's final answer as LaTeX/plain text, or None when it gave none.

    Whichever of the last boxed answer and the last answer tag ends later wins; a boxed answer
    inside the answer tag is unwrapped.
    """
    boxed, tag = last_boxed(text), last_answer_tag(text)
    if tag is not None and (boxed is None or tag[1] >= boxed[1]):
        inner = last_boxed(tag[0])
        answer = inner[0] if inner else tag[0]
    elif boxed is not None:
        answer = boxed[0]
    else:
        return None
    answer = answer.strip().strip("$").strip()
    if not answer or len(answer) > MAX_ANSWER_CHARS:
        return None
    return answer
