"""Generation backends for eval: vLLM (the fast path) and HF `generate` (the baseline).

Both take token ids (we apply the chat template and tokenize once, so both engines see exactly the
same input and no backend adds a second BOS) and one seed per sample. vLLM honours per-request
seeds, so every sample depends only on (seed, benchmark, problem id, sample index): a resumed run
and a fresh one produce the same samples whatever the batching. HF `generate` has one global RNG,
so its sampled (T > 0) outputs depend on the batch they ran in; greedy outputs do not.

The vLLM engine is built by `nemo_r1.rollout` (CPU fp32, eager, no chunked prefill so per-request
seeds work); the HF baseline is a plain `generate` without per-token scores, so the benchmark
compares against HF at its fastest.
"""

from __future__ import annotations

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
    """CPU vLLM KV-cache size."""
    gpu_memory_utilization: float = 0.9
    """GPU: eval runs alone, so the engine may take most of the memory."""


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
    """Eval's driver of a rollout `VLLMEngine` (nemo_r1.rollout): same engine settings as GRPO.

    The rollout `generate()` returns when its whole batch is done and derives seeds from the
    position in the call; eval needs a seed per (problem, sample) that survives resumption and
    wants each problem as soon as it is done, so this drives the engine's `vllm.LLM` request by
    request. Pass `generator=` to evaluate with an engine that already exists (a trainer's).
    """

    def __init__(self, spec: EngineSpec | None = None, generator: Any = None) -> None:
        if generator is None:
            if spec is None:
                raise ValueError("VllmEngine needs a spec or a generator")
            from nemo_r1.rollout import EngineConfig
            from nemo_r1.rollout.vllm_engine import VLLMEngine

            cfg = EngineConfig(backend="vllm", dtype=spec.dtype, tensor_parallel_size=spec.tp, seed=spec.seed,
                               max_model_len=spec.max_model_len or model_max_len(spec.model),
                               kv_cache_gib=spec.kv_cache_gib, gpu_memory_utilization=spec.gpu_memory_utilization,
                               sleep_during_training=False)
            generator = VLLMEngine(spec.model, cfg)
        self.generator = generator
        self.llm = generator.llm
        self.max_model_len = int(generator.cfg.max_model_len)
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
        from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

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
        # The checkpoint's sampling defaults (repetition_penalty, top_k, ...) would fill every
        # setting we leave unset; vLLM gets exactly our settings, so HF must start from a clean one.
        self.model.generation_config = GenerationConfig(
            bos_token_id=self.model.generation_config.bos_token_id, eos_token_id=sorted(self.eos_ids),
            pad_token_id=self.pad_id)

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
            kw: dict[str, Any] = dict(max_new_tokens=budget)
            if temperature == 0:
                kw.update(do_sample=False)
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


class GeneratorAdapter:
    """Any rollout `Generator` (e.g. a trainer's HF reference): one call per batch; its seeds are
    `seeds[0] + position`, so sampled outputs reproduce only for the same problem set."""

    def __init__(self, generator: Any, max_model_len: int) -> None:
        self.generator, self.max_model_len = generator, max_model_len

    def generate(self, prompts: list[list[int]], seeds: list[int], temperature: float, top_p: float,
                 max_new_tokens: list[int]) -> list[Completion]:
        from nemo_r1.rollout import SamplingConfig

        sc = SamplingConfig(n=1, temperature=temperature, top_p=top_p, max_new_tokens=max(max_new_tokens),
                            seed=seeds[0] if seeds else None)
        eos = getattr(self.generator.tokenizer, "eos_token_id", None)
        out = []
        for r in self.generator.generate(prompts, sc):
            ids = list(r.completion_token_ids)
            if r.finish_reason == "stop" and r.stop_string is None and ids and ids[-1] == eos:
                ids = ids[:-1]
            out.append(Completion(r.text, ids, r.finish_reason))
        return out


def as_engine(obj: Any) -> Engine:
    """An eval Engine from what a caller holds: an eval engine, a rollout VLLMEngine, any Generator."""
    if hasattr(obj, "generate_stream") or isinstance(obj, HFEngine):
        return obj
    if hasattr(obj, "llm") and hasattr(obj, "cfg"):
        return VllmEngine(generator=obj)
    if hasattr(obj, "generate") and hasattr(obj, "tokenizer"):
        cfg = getattr(obj, "cfg", None)
        return GeneratorAdapter(obj, int(getattr(cfg, "max_model_len", 0) or 4096))
    if hasattr(obj, "generate") and hasattr(obj, "max_model_len"):
        return obj  # duck-typed eval engine (tests use an oracle)
    raise TypeError(f"cannot evaluate with {type(obj).__name__}: pass an eval engine or a rollout Generator")


def build_engine(spec: EngineSpec) -> Engine:
    if spec.backend == "vllm":
        return VllmEngine(spec)
    if spec.backend == "hf":
        return HFEngine(spec)
    raise ValueError(f"unknown eval backend {spec.backend!r}; use vllm, hf or lighteval")
