"""Data-parallel generation: one engine per worker process, chunks handed out as workers free up.

Why processes: a vLLM engine (and its TP group) owns its devices; several independent engines are
the simplest way to use a node's GPUs for eval (`dp x tp` GPUs). The parent keeps the only writer
of the samples files, so workers never touch the output and a kill loses at most in-flight chunks.
With dp=1 the engine lives in the calling process and nothing is spawned.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from nemo_r1.eval.engines import Completion, Engine, EngineSpec, build_engine


@dataclass
class Chunk:
    """A unit of generation work: the prompts (token ids) of a few problems' samples."""

    key: Any
    prompts: list[list[int]]
    seeds: list[int]
    max_new_tokens: list[int]


def _worker(rank: int, spec: EngineSpec, devices: list[str] | None, threads: int | None,
            tasks: mp.Queue, results: mp.Queue) -> None:
    # Devices and thread counts must be set before torch / vLLM initialise in this process.
    if devices is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(devices)
    if threads:
        os.environ["OMP_NUM_THREADS"] = str(threads)
        import torch

        torch.set_num_threads(threads)
    try:
        engine = build_engine(spec)
        results.put(("ready", rank, engine.max_model_len))
        while True:
            item = tasks.get()
            if item is None:
                break
            chunk, temperature, top_p = item
            outs = engine.generate(chunk.prompts, chunk.seeds, temperature, top_p, chunk.max_new_tokens)
            results.put(("done", rank, (chunk.key, outs)))
    except BaseException:  # report to the parent instead of dying silently
        results.put(("error", rank, traceback.format_exc()))


def _visible_devices() -> list[str]:
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env:
        return [d for d in env.split(",") if d.strip()]
    import torch

    return [str(i) for i in range(torch.cuda.device_count())]


class EnginePool:
    """`dp` engines; `run(chunks)` yields (key, completions) in completion order."""

    def __init__(self, spec: EngineSpec, dp: int = 1, threads_per_worker: int | None = None,
                 engine: Engine | None = None) -> None:
        self.spec, self.dp = spec, dp
        self._local: Engine | None = None
        self._owned = engine is None
        self._procs: list[mp.Process] = []
        if engine is not None or dp == 1:
            self._local = engine if engine is not None else build_engine(spec)
            self.max_model_len = self._local.max_model_len
            return
        import torch

        devices = None
        if torch.cuda.is_available():
            vis = _visible_devices()
            if len(vis) < dp * spec.tp:
                raise ValueError(f"--dp {dp} x --tp {spec.tp} needs {dp * spec.tp} GPUs, {len(vis)} visible")
            devices = [vis[r * spec.tp:(r + 1) * spec.tp] for r in range(dp)]
        ctx = mp.get_context("spawn")
        self._tasks: mp.Queue = ctx.Queue()
        self._results: mp.Queue = ctx.Queue()
        for r in range(dp):
            p = ctx.Process(target=_worker, args=(r, spec, devices[r] if devices else None, threads_per_worker,
                                                  self._tasks, self._results), daemon=True)
            p.start()
            self._procs.append(p)
        lens = [self._get("ready") for _ in range(dp)]
        self.max_model_len = min(lens)

    def _get(self, want: str) -> Any:
        while True:
            try:
                kind, rank, payload = self._results.get(timeout=5)
            except queue.Empty:
                dead = [p for p in self._procs if not p.is_alive()]
                if dead:
                    raise RuntimeError(f"eval worker died (exit code {dead[0].exitcode})") from None
                continue
            if kind == "error":
                self.close()
                raise RuntimeError(f"eval worker {rank} failed:\n{payload}")
            if kind == want:
                return payload

    def run(self, chunks: list[Chunk], temperature: float, top_p: float) -> Iterator[tuple[Any, list[Completion]]]:
        if self._local is not None:
            for c in chunks:
                yield c.key, self._local.generate(c.prompts, c.seeds, temperature, top_p, c.max_new_tokens)
            return
        # Keep two chunks per worker queued so no engine idles while the parent scores and writes.
        pending = list(chunks)
        in_flight = 0
        while pending or in_flight:
            while pending and in_flight < 2 * self.dp:
                self._tasks.put((pending.pop(0), temperature, top_p))
                in_flight += 1
            key, outs = self._get("done")
            in_flight -= 1
            yield key, outs

    def close(self) -> None:
        for _ in self._procs:
            self._tasks.put(None)
        for p in self._procs:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()
        self._procs = []
        self._local = None
