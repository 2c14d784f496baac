"""transformers `generate` behind the same `Generator` interface: the reference the vLLM engine is
tested and benchmarked against (slow: no paged KV cache, no continuous batching)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from nemo_r1.rollout.base import (
    Completion,
    EngineConfig,
    Rollout,
    SamplingConfig,
    normalize_prompts,
    split_stop,
)
from nemo_r1.rollout.refit import RefitStats, Timer, check_complete, stream


class HFGenerator:
    """Left-padded batches through `model.generate`; one RNG per batch (see `generate`)."""

    def __init__(self, model: str | Path | torch.nn.Module | None = None, cfg: EngineConfig | None = None,
                 tokenizer: Any = None) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

        self.cfg = cfg or EngineConfig(backend="hf")
        model = model if model is not None else self.cfg.model
        if model is None:
            raise ValueError("HFGenerator needs a model: pass it, or set rollout.model")
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        if isinstance(model, torch.nn.Module):
            self.model = model
            if tokenizer is None:
                raise ValueError("HFGenerator(model=<nn.Module>) needs tokenizer=")
        else:
            dtype = getattr(torch, self.cfg.dtype) if self.cfg.dtype else (
                torch.float32 if self.device == "cpu" else torch.bfloat16)
            self.model = AutoModelForCausalLM.from_pretrained(str(model), dtype=dtype)
        self.model = self.model.to(self.device).eval()
        self.tokenizer = tokenizer or AutoTokenizer.from_pretrained(str(model))
        self.pad_id = self.tokenizer.pad_token_id
        if self.pad_id is None:
            self.pad_id = self.tokenizer.eos_token_id
        eos = self.model.generation_config.eos_token_id
        self.eos_ids = set(eos if isinstance(eos, list) else [] if eos is None else [eos])
        if self.tokenizer.eos_token_id is not None:
            self.eos_ids.add(self.tokenizer.eos_token_id)
        # The checkpoint's sampling defaults (repetition_penalty, top_k, ...) would fill every
        # setting we leave unset; vLLM gets exactly our settings, so HF starts from a clean config.
        self.model.generation_config = GenerationConfig(
            bos_token_id=self.model.generation_config.bos_token_id, eos_token_id=sorted(self.eos_ids),
            pad_token_id=self.pad_id)
        ctx = getattr(self.model.config, "max_position_embeddings", 0) or 4096
        self.max_model_len = int(self.cfg.max_model_len or ctx)

    @torch.inference_mode()
    def stream(self, prompts: Sequence[Sequence[int]], seeds: Sequence[int | None], sampling: SamplingConfig,
               max_new_tokens: Sequence[int] | None = None, max_in_flight: int | None = None
               ) -> Iterator[tuple[int, Completion]]:
        """`Generator.stream` in left-padded chunks of `hf_batch_size` (a chunk finishes together).
        Plain `generate` without per-token scores, so benchmarks see HF at its fastest. One global
        RNG: a sampled chunk is seeded from its first sample's seed, so sampled outputs depend on
        the chunking; greedy ones do not."""
        budgets = list(max_new_tokens) if max_new_tokens is not None else [sampling.max_new_tokens] * len(prompts)
        bs = self.cfg.hf_batch_size
        for start in range(0, len(prompts), bs):
            batch = [[int(t) for t in p] for p in prompts[start:start + bs]]
            width = max(len(p) for p in batch)
            ids = torch.tensor([[self.pad_id] * (width - len(p)) + p for p in batch], device=self.device)
            mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in batch], device=self.device)
            limits = budgets[start:start + bs]
            kw: dict[str, Any] = dict(max_new_tokens=max(limits))
            if sampling.greedy:
                kw.update(do_sample=False)
            else:
                if seeds[start] is not None:
                    torch.manual_seed(int(seeds[start]))
                kw.update(do_sample=True, temperature=sampling.temperature, top_p=sampling.top_p,
                          top_k=sampling.top_k if sampling.top_k > 0 else 0)
            if sampling.stop:
                kw.update(stop_strings=list(sampling.stop), tokenizer=self.tokenizer)
            gen = self.model.generate(input_ids=ids, attention_mask=mask, **kw)[:, width:]
            for k, (row, limit) in enumerate(zip(gen.tolist(), limits, strict=True)):
                toks, reason = [], "length"
                for t in row[:limit]:
                    if t in self.eos_ids:
                        reason = "stop"
                        break
                    toks.append(t)
                text = self.tokenizer.decode(toks, skip_special_tokens=True)
                if sampling.stop:
                    text, hit = split_stop(text, sampling.stop)
                    if hit is not None:
                        toks, reason = _trim_after_stop(toks, self.tokenizer, hit), "stop"
                yield start + k, Completion(text, toks, reason)

    @torch.inference_mode()
    def generate(self, prompts: Sequence[str] | Sequence[Sequence[int]],
                 sampling: SamplingConfig) -> list[Rollout]:
        """HF has one global RNG, so sampled outputs depend on the batch; greedy ones do not."""
        ids = normalize_prompts(prompts, self.tokenizer)
        expanded = [(i, j) for i in range(len(ids)) for j in range(sampling.n)]
        out: list[Rollout] = []
        bs = self.cfg.hf_batch_size
        for start in range(0, len(expanded), bs):
            chunk = expanded[start:start + bs]
            batch = [ids[i] for i, _ in chunk]
            width = max(len(p) for p in batch)
            inp = torch.tensor([[self.pad_id] * (width - len(p)) + p for p in batch], device=self.device)
            mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in batch], device=self.device)
            kw: dict[str, Any] = dict(max_new_tokens=sampling.max_new_tokens, pad_token_id=self.pad_id,
                                      eos_token_id=sorted(self.eos_ids), return_dict_in_generate=True,
                                      output_scores=True)
            if sampling.greedy:
                kw.update(do_sample=False, temperature=None, top_p=None, top_k=None)
            else:
                if sampling.seed is not None:
                    torch.manual_seed(sampling.seed + start)
                kw.update(do_sample=True, temperature=sampling.temperature, top_p=sampling.top_p,
                          top_k=sampling.top_k if sampling.top_k > 0 else 0)
            if sampling.stop:
                kw.update(stop_strings=list(sampling.stop), tokenizer=self.tokenizer)
            res = self.model.generate(input_ids=inp, attention_mask=mask, **kw)
            gen = res.sequences[:, width:]
            # scores are the processed logits the token was sampled from (temperature/top-k/top-p)
            logp = torch.stack(res.scores, dim=1).float().log_softmax(-1)
            picked = logp.gather(-1, gen[:, :logp.shape[1]].unsqueeze(-1)).squeeze(-1)
            for row, (i, j) in enumerate(chunk):
                out.append(self._to_rollout(i, j, ids[i], gen[row].tolist(), picked[row].tolist(), sampling))
        return out

    def _to_rollout(self, i: int, j: int, prompt: list[int], gen: list[int], lps: list[float],
                    sampling: SamplingConfig) -> Rollout:
        toks: list[int] = []
        reason = "length"
        for t in gen:
            toks.append(t)
            if t in self.eos_ids:
                reason = "stop"
                break
        text = self.tokenizer.decode(toks, skip_special_tokens=True)
        hit = None
        if sampling.stop:
            # generate ends a row at a stop string and pads it (pad may be EOS): cut the text there
            # and keep the tokens up to the one that completed the stop string
            text, hit = split_stop(text, sampling.stop)
            if hit is not None:
                toks = _trim_after_stop(toks, self.tokenizer, hit)
                reason = "stop"
        return Rollout(i, j, list(prompt), toks, text, lps[:len(toks)], reason, hit)

    @torch.inference_mode()
    def score(self, sequences: Sequence[Sequence[int]]) -> list[list[float]]:
        out = []
        for s in sequences:
            x = torch.tensor([list(s)], device=self.device)
            logits = self.model(input_ids=x).logits.float()
            lp = logits[0, :-1].log_softmax(-1).gather(-1, x[0, 1:].unsqueeze(-1)).squeeze(-1)
            out.append(lp.tolist())
        return out

    @torch.no_grad()
    def update_weights(self, weights: Iterable[tuple[str, Tensor]]) -> RefitStats:
        params = dict(self.model.named_parameters())
        tied = bool(getattr(self.model.config, "tie_word_embeddings", False))
        stats = RefitStats()
        with Timer() as tm:
            for name, t in stream(weights, None, stats):
                if name not in params:
                    if tied and name == "lm_head.weight":
                        continue
                    raise KeyError(f"refit: {name!r} is not a parameter of the HF model")
                params[name].copy_(t)
        stats.seconds = tm.seconds
        expected = set(params) - ({"lm_head.weight"} if tied else set())
        check_complete(stats.names, expected, tied)
        return stats


def _trim_after_stop(toks: list[int], tokenizer: Any, stop: str) -> list[int]:
    """Shortest prefix of `toks` whose text contains `stop` (the tokens the policy produced)."""
    for k in range(1, len(toks) + 1):
        if stop in tokenizer.decode(toks[:k], skip_special_tokens=True):
            return toks[:k]
    return toks
