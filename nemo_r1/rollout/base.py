"""The narrow generation interface the GRPO trainer and eval use, whatever the backend.

A backend turns prompts into `Rollout`s: token ids, text, the log-probabilities of the sampled
tokens under the distribution they were *sampled from* (temperature/top-k/top-p applied) and why
each sample stopped. Samples of one prompt come out consecutively (`n` per prompt), which is the
group layout `nemo_r1.algorithms.grpo.compute_advantages` expects.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:  # annotations only: the config (and so every CLI process, and the reward pool's
    from torch import Tensor  # spawned workers, which re-import it) must not pay for importing torch

FINISH_REASONS = ("stop", "length")


@dataclass
class SamplingConfig:
    """How to sample; composed into the run config as the `rollout` section."""

    n: int = 1
    """Samples per prompt (GRPO's group size)."""
    temperature: float = 1.0
    """0 = greedy."""
    top_p: float = 1.0
    top_k: int = -1
    """-1 = no top-k filtering."""
    max_new_tokens: int = 256
    """Completion budget per sample; hitting it gives finish_reason `length`."""
    stop: list[str] = field(default_factory=list)
    """Stop strings: generation ends at the first one; the text is cut before it."""
    seed: int | None = None
    """Per-request seeds (sample j of prompt i uses seed + i*n + j): the same seed gives the same
    samples whatever the batching. None = draw from the engine's seeded stream."""

    def __post_init__(self) -> None:
        if self.n < 1:
            raise ValueError(f"rollout.n={self.n} must be >= 1")
        if self.temperature < 0:
            raise ValueError(f"rollout.temperature={self.temperature} must be >= 0 (0 = greedy)")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"rollout.top_p={self.top_p} must be in (0, 1]")
        if self.top_k == 0 or self.top_k < -1:
            raise ValueError(f"rollout.top_k={self.top_k} must be -1 (off) or >= 1")
        if self.max_new_tokens < 1:
            raise ValueError(f"rollout.max_new_tokens={self.max_new_tokens} must be >= 1")
        if isinstance(self.stop, str):
            raise ValueError(f"rollout.stop must be a list of strings, got the string {self.stop!r}; "
                             f"write stop: [{self.stop!r}]")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


@dataclass
class EngineConfig:
    """How to build the generation engine (everything but sampling)."""

    model: str | None = None
    """HF checkpoint the engine loads. None: the caller's (GRPO: `model.path`; eval/generate: --model)."""
    backend: str = "vllm"
    """`vllm` (colocated engine) or `hf` (transformers generate: slow, the reference baseline)."""
    dtype: str | None = None
    """None: float32 on CPU (bf16 logprobs are far off there), bfloat16 on GPU."""
    max_model_len: int | None = None
    """Longest prompt + completion the engine accepts. None: GRPO's `train.max_seq_len`, else the
    model's context length."""
    tensor_parallel_size: int = 1
    """GPU: the engine's TP group, which must be the training TP group; CPU engines use 1."""
    seed: int = 0
    """Engine RNG seed (used when SamplingConfig.seed is None)."""
    kv_cache_gib: float = 1.0
    """CPU: KV-cache size in GiB (the CPU backend would otherwise reserve most of RAM)."""
    block_size: int | None = None
    """KV-cache block size in tokens. None: 32 on CPU (vLLM's CPU default, 128, decoded 246 tok/s vs
    281 at 32 on SmolLM2, gsm8k n=4, 256 tokens; same tokens), vLLM's own default on GPU."""
    fast_top_p: bool = True
    """CPU: exact top-p without sorting the vocabulary (`rollout/top_p.py`); same kept tokens."""
    gpu_memory_utilization: float = 0.5
    """GPU: fraction of memory for weights + KV cache (the rest stays for training)."""
    sleep_during_training: bool = True
    """GPU: release the KV cache and offload weights (sleep level 1) while training."""
    refit_bucket_mb: int = 256
    """Bucket size of the trainer's weight export (`iter_hf_weights(bucket_bytes=...)`): the
    extra memory of a refit on top of the engine's own re-processing of each layer."""
    logprobs_mode: str = "processed_logprobs"
    """`processed_logprobs`: logprobs after temperature/top-k/top-p (the behaviour policy, what
    importance ratios need); `raw_logprobs`: of the unmodified model distribution."""
    hf_batch_size: int = 16
    """Prompts per `generate` call of the HF backend."""

    def __post_init__(self) -> None:
        if self.backend not in ("vllm", "hf"):
            raise ValueError(f"rollout.backend={self.backend!r} must be 'vllm' or 'hf'")
        if self.logprobs_mode not in ("processed_logprobs", "raw_logprobs"):
            raise ValueError(f"rollout.logprobs_mode={self.logprobs_mode!r} must be "
                             "'processed_logprobs' or 'raw_logprobs'")
        if self.block_size is not None and (self.block_size < 1 or self.block_size % 16):
            raise ValueError(f"rollout.block_size={self.block_size} must be a positive multiple of 16 "
                             "(vLLM's CPU attention needs a multiple of 32)")
        if self.refit_bucket_mb < 1:
            raise ValueError(f"rollout.refit_bucket_mb={self.refit_bucket_mb} must be >= 1")
        if self.max_model_len is not None and self.max_model_len < 2:
            raise ValueError(f"rollout.max_model_len={self.max_model_len} must be >= 2 (or null: the model's)")


@dataclass
class RolloutConfig(EngineConfig):
    """The `rollout` config section: the engine and how it samples. GRPO, `nemo-r1 eval` and
    `nemo-r1 generate` all build their engine from this one section (eval/generate also from flags,
    which override it); `n` and the seeds come from the caller (group size, sample keys)."""

    max_new_tokens: int = 256
    temperature: float = 1.0
    """0 = greedy."""
    top_p: float = 1.0
    top_k: int = -1
    """-1 = no top-k filtering."""
    stop: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__post_init__()
        self.sampling(1, None)  # the sampling keys are checked at load time, not at the first step

    def sampling(self, n: int, seed: int | None) -> SamplingConfig:
        """This section's sampling settings for `n` samples per prompt from `seed`."""
        return SamplingConfig(n=n, temperature=self.temperature, top_p=self.top_p, top_k=self.top_k,
                              max_new_tokens=self.max_new_tokens, stop=list(self.stop), seed=seed)

    def engine(self, **overrides: Any) -> EngineConfig:
        """The engine half of the section (what engines take), with `overrides` applied."""
        keys = {f.name for f in fields(EngineConfig)}
        return EngineConfig(**{**{k: getattr(self, k) for k in keys}, **overrides})


@dataclass
class Completion:
    """One finished sample of `Generator.stream`: what eval grades and `generate` writes."""

    text: str
    """Decoded completion without special tokens, cut before a stop string."""
    token_ids: list[int]
    """Generated ids without a closing EOS (its length is the completion's length)."""
    finish_reason: str
    """`stop` (EOS or stop string) or `length` (hit max_new_tokens)."""


@dataclass
class Rollout:
    """One sampled completion of one prompt."""

    prompt_index: int
    """Index of the prompt in the `generate` call."""
    sample_index: int
    """0..n-1 within its prompt."""
    prompt_token_ids: list[int]
    completion_token_ids: list[int]
    """Every generated id: a closing EOS is kept (the policy must learn to stop), and so is the token
    that completed a stop string (the policy produced it; only the text is cut)."""
    text: str
    """Decoded completion without special tokens, cut before a stop string."""
    logprobs: list[float]
    """Log-probability of each completion token under the sampling distribution (len == ids)."""
    finish_reason: str
    """`stop` (EOS or a stop string) or `length` (hit max_new_tokens)."""
    stop_string: str | None = None
    """The stop string that ended the sample (None for EOS or length)."""
    sampled_mask: list[bool] | None = None
    """None: every completion token was sampled. Budget forcing inserts tokens the policy did not
    sample ("Wait", a forced `</think>`): False there, and their logprobs are 0 placeholders, so
    the trainer must leave them out of the loss."""

    @property
    def truncated(self) -> bool:
        return self.finish_reason == "length"


@runtime_checkable
class Generator(Protocol):
    """What trainers, eval and `generate` call; `VLLMEngine` and `HFGenerator` implement it."""

    tokenizer: Any
    max_model_len: int

    def generate(self, prompts: Sequence[str] | Sequence[Sequence[int]],
                 sampling: SamplingConfig) -> list[Rollout]: ...

    def score(self, sequences: Sequence[Sequence[int]]) -> list[list[float]]:
        """Logprob of tokens[1:] given their prefix (raw model distribution), one list per sequence."""
        ...

    def update_weights(self, weights: Iterable[tuple[str, Tensor]]) -> int:
        """Replace all weights with HF-named tensors (the full set, streamed); returns bytes loaded."""
        ...

    def stream(self, prompts: Sequence[Sequence[int]], seeds: Sequence[int | None], sampling: SamplingConfig,
               max_new_tokens: Sequence[int] | None = None, max_in_flight: int | None = None
               ) -> Iterator[tuple[int, Completion]]:
        """One sample per prompt, each with its own seed (None: the engine's stream) and budget
        (None: `sampling.max_new_tokens`); yields (prompt index, completion) as each finishes, so a
        caller can write results as they exist (eval, `generate`). `sampling.n` and `.seed` are
        ignored: the seeds list is the sample identity, which is what makes reruns reproduce."""
        ...


def normalize_prompts(prompts: Sequence[str] | Sequence[Sequence[int]], tokenizer) -> list[list[int]]:
    """Token ids for every prompt: strings are tokenized as-is (no chat template, that is the data
    layer's job), id lists pass through; mixing both, or an empty prompt, is refused."""
    if isinstance(prompts, str):
        raise TypeError("generate() takes a list of prompts, got a single string; wrap it in a list")
    out: list[list[int]] = []
    kinds = set()
    for i, p in enumerate(prompts):
        if isinstance(p, str):
            kinds.add("str")
            ids = tokenizer(p, add_special_tokens=_adds_bos(tokenizer))["input_ids"]
        else:
            kinds.add("ids")
            ids = [int(t) for t in p]
        if not ids:
            raise ValueError(f"prompt {i} is empty: a completion needs at least one prompt token")
        out.append(ids)
    if len(kinds) > 1:
        raise TypeError("prompts mix strings and token-id lists; pass one kind")
    return out


def _adds_bos(tokenizer) -> bool:
    """Add special tokens only when the tokenizer has a BOS it expects (Llama-style), so plain text
    prompts get the same ids the model was trained on; SmolLM2/Qwen add nothing either way."""
    return getattr(tokenizer, "add_bos_token", False) and tokenizer.bos_token_id is not None


def split_stop(text: str, stop: Sequence[str]) -> tuple[str, str | None]:
    """Cut `text` at the earliest stop string; returns (kept text, the stop string or None)."""
    best, which = len(text), None
    for s in stop:
        j = text.find(s)
        if j != -1 and j < best:
            best, which = j, s
    return text[:best], which
