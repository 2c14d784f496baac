"""Budget forcing (s1, Muennighoff et al. 2025) as a loop around any `Generator`.

- Minimum thinking: when a sample closes its thinking block (`</think>`) before
  `min_thinking_tokens`, the closing tag is replaced by "Wait" and generation continues.
- Maximum thinking: a sample still thinking after `max_thinking_tokens` gets `</think>` (and an
  optional answer prefix) appended and then writes its answer.

Each round re-submits the unfinished samples as prompt + completion-so-far (prefix caching makes
that cheap). Inserted tokens were not sampled by the policy: they are marked in
`Rollout.sampled_mask` with 0 logprobs, so a trainer can leave them out of the loss.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from nemo_r1.rollout.base import Generator, Rollout, SamplingConfig, normalize_prompts


@dataclass
class BudgetConfig:
    """s1 budget forcing; both limits off by default."""

    min_thinking_tokens: int = 0
    """Replace an earlier `</think>` with `wait` and keep thinking (0 = off)."""
    max_thinking_tokens: int | None = None
    """Force `</think>` + `answer_prefix` once thinking reaches this many tokens (None = off)."""
    think_close: str = "</think>"
    wait: str = "Wait"
    answer_prefix: str = ""
    """Text forced after a forced `</think>` (e.g. "\\n\\nFinal answer: ")."""
    max_waits: int = 4
    """At most this many "Wait"s per sample; then an early `</think>` is accepted."""

    def __post_init__(self) -> None:
        if self.min_thinking_tokens < 0:
            raise ValueError(f"budget.min_thinking_tokens={self.min_thinking_tokens} must be >= 0")
        if self.max_thinking_tokens is not None and self.max_thinking_tokens < max(1, self.min_thinking_tokens):
            raise ValueError(f"budget.max_thinking_tokens={self.max_thinking_tokens} must be >= "
                             f"max(1, min_thinking_tokens={self.min_thinking_tokens})")
        if not self.think_close:
            raise ValueError("budget.think_close must be a non-empty string such as '</think>'")

    @property
    def active(self) -> bool:
        return self.min_thinking_tokens > 0 or self.max_thinking_tokens is not None


@dataclass
class _Sample:
    prompt_index: int
    sample_index: int
    prompt: list[int]
    ids: list[int]
    logprobs: list[float]
    sampled: list[bool]
    text: str = ""
    waits: int = 0
    thinking: bool = True
    done: Rollout | None = None

    def extend(self, ids: list[int], lps: list[float], sampled: bool, text: str) -> None:
        self.ids += ids
        self.logprobs += lps if sampled else [0.0] * len(ids)
        self.sampled += [sampled] * len(ids)
        self.text += text


def generate_with_budget(gen: Generator, prompts: Sequence[str] | Sequence[Sequence[int]],
                         sampling: SamplingConfig, budget: BudgetConfig) -> list[Rollout]:
    """`gen.generate` with s1 budget forcing; same output layout (n consecutive samples per prompt)."""
    if not budget.active:
        return gen.generate(prompts, sampling)
    tok = gen.tokenizer
    ids = normalize_prompts(prompts, tok)
    samples = [_Sample(i, j, ids[i], [], [], []) for i in range(len(ids)) for j in range(sampling.n)]
    rnd = 0
    while any(s.done is None for s in samples):
        todo = [s for s in samples if s.done is None]
        room = [sampling.max_new_tokens - len(s.ids) for s in todo]
        # one round = the same phase for everyone in it: run thinking and answering samples apart
        for thinking in (True, False):
            group = [(s, r) for s, r in zip(todo, room, strict=True) if s.thinking == thinking]
            if group:
                _round(gen, group, sampling, budget, thinking, rnd)
        rnd += 1
    return [s.done for s in samples]  # type: ignore[misc]


def _round(gen: Generator, group: list[tuple[_Sample, int]], sampling: SamplingConfig,
           budget: BudgetConfig, thinking: bool, rnd: int) -> None:
    # a round asks for as many tokens as the tightest sample in it may take, then cuts the others
    limits = []
    for s, room in group:
        lim = room
        if thinking and budget.max_thinking_tokens is not None:
            lim = min(lim, budget.max_thinking_tokens - len(s.ids))
        limits.append(max(1, lim))
    seed = None if sampling.seed is None else sampling.seed + 1_000_003 * (rnd + 1)
    stop = list(sampling.stop) + ([budget.think_close] if thinking else [])
    for lim in sorted(set(limits)):
        members = [(s, r) for (s, r), m in zip(group, limits, strict=True) if m == lim]
        sub = replace(sampling, n=1, max_new_tokens=lim, stop=stop, seed=seed)
        outs = gen.generate([s.prompt + s.ids for s, _ in members], sub)
        for (s, _room), out in zip(members, outs, strict=True):
            _advance(s, out, gen, sampling, budget, thinking)


def _advance(s: _Sample, out: Rollout, gen: Generator, sampling: SamplingConfig, budget: BudgetConfig,
             thinking: bool) -> None:
    tok = gen.tokenizer
    closed = out.stop_string == budget.think_close
    if not thinking or (out.finish_reason == "stop" and not closed):
        # answering, or an EOS / user stop string: the sample is complete
        s.extend(out.completion_token_ids, out.logprobs, True, out.text)
        _finish(s, out, sampling)
        return
    if closed:
        keep, rest = _strip_stop(out.completion_token_ids, out.text, tok)
        s.extend(out.completion_token_ids[:keep], out.logprobs[:keep], True, out.text[:len(out.text) - len(rest)])
        if len(s.ids) < budget.min_thinking_tokens and s.waits < budget.max_waits:
            _force(s, rest + budget.wait, tok)
            s.waits += 1
        else:
            # accept the model's own closing tag: its tokens were sampled, keep their logprobs
            close_ids = out.completion_token_ids[keep:]
            s.extend(close_ids, out.logprobs[keep:], True, rest + budget.think_close)
            s.thinking = False
    else:
        # the thinking budget (or the whole budget) ran out while thinking
        s.extend(out.completion_token_ids, out.logprobs, True, out.text)
        if len(s.ids) >= sampling.max_new_tokens:
            _finish(s, out, sampling)
            return
        _force(s, budget.think_close + budget.answer_prefix, tok)
        s.thinking = False
    if len(s.ids) >= sampling.max_new_tokens:
        _finish(s, out, sampling, force_length=True)


def _force(s: _Sample, text: str, tok) -> None:
    ids = tok(text, add_special_tokens=False)["input_ids"]
    s.extend(ids, [0.0] * len(ids), False, text)


def _strip_stop(ids: list[int], text_before: str, tok) -> tuple[int, str]:
    """How many leading tokens decode to a prefix of the text before the stop string, and the text
    those tokens leave out (characters that shared a token with the stop string)."""
    for k in range(len(ids), -1, -1):
        dec = tok.decode(ids[:k], skip_special_tokens=True)
        if text_before.startswith(dec):
            return k, text_before[len(dec):]
    return 0, text_before


def _finish(s: _Sample, last: Rollout, sampling: SamplingConfig, force_length: bool = False) -> None:
    n = sampling.max_new_tokens
    ids, lps, sampled = s.ids[:n], s.logprobs[:n], s.sampled[:n]
    reason = "length" if force_length or len(s.ids) >= n and last.finish_reason == "length" else last.finish_reason
    s.done = Rollout(s.prompt_index, s.sample_index, list(s.prompt), ids, s.text, lps, reason,
                     last.stop_string if reason == "stop" else None,
                     None if all(sampled) else sampled)
