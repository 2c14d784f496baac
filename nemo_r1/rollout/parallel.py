"""Running generation jobs (one problem's n samples each) on one engine or several worker processes:
the seeded, streaming, data-parallel layer under `nemo-r1 eval` and `nemo-r1 generate`.

Results come back per job, in completion order, so the caller writes each problem as soon as its
samples exist: progress is smooth and a kill loses only problems still in flight. A `Generator`'s
`stream` keeps `max_batch` requests in flight (vLLM refills as they finish: continuous batching, no
batch waits for its longest sequence; HF runs chunks). Any object with `max_model_len` and a
`generate(prompts, seeds, temperature, top_p, max_new_tokens) -> [Completion]` also works (test
oracles, a remote service).

Data parallel (`dp > 1`): one engine per spawned process, each on its own `tp` GPUs. Why
processes: a vLLM engine (and its TP group) owns its devices, and independent engines are the
simplest way to fill a node for eval. The parent stays the only writer of the samples files.
"""

from __future__ import annotations

import hashlib
import multiprocessing as mp
import os
import queue
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from nemo_r1.rollout.base import Completion, EngineConfig, SamplingConfig


def sample_seed(seed: int, name: str, pid: str, index: int) -> int:
    """The seed of sample `index` of problem `pid` of dataset `name`: a stable hash (Python's hash()
    is salted per process), so a sample is the same whatever the batching, sharding or resumption."""
    h = hashlib.sha256(f"{seed}/{name}/{pid}/{index}".encode()).digest()
    return int.from_bytes(h[:4], "little") & 0x7FFFFFFF


@dataclass
class Job:
    """One problem's samples: n prompts (token ids), their seeds and token budgets."""

    key: Any
    prompts: list[list[int]]
    seeds: list[int]
    max_new_tokens: list[int]


def run_local(engine: Any, jobs: list[Job], sampling: SamplingConfig,
              max_batch: int) -> Iterator[tuple[Any, list[Completion]]]:
    """Yield (job key, completions) as jobs finish on one in-process engine."""
    if not jobs:
        return
    stream = getattr(engine, "stream", None)
    if stream is not None:
        owner = [j for j, job in enumerate(jobs) for _ in job.prompts]
        slot = [i for job in jobs for i in range(len(job.prompts))]
        got: list[list[Completion | None]] = [[None] * len(job.prompts) for job in jobs]
        left = [len(job.prompts) for job in jobs]
        flat = [(p, s, m) for job in jobs for p, s, m in zip(job.prompts, job.seeds, job.max_new_tokens, strict=True)]
        for idx, comp in stream([f[0] for f in flat], [f[1] for f in flat], sampling,
                                [f[2] for f in flat], max_in_flight=max_batch):
            j = owner[idx]
            got[j][slot[idx]] = comp
            left[j] -= 1
            if left[j] == 0:
                yield jobs[j].key, got[j]  # type: ignore[misc]
        return
    chunk: list[Job] = []
    for i, job in enumerate(jobs):
        chunk.append(job)
        if sum(len(c.prompts) for c in chunk) >= max_batch or i == len(jobs) - 1:
            outs = engine.generate([p for c in chunk for p in c.prompts], [s for c in chunk for s in c.seeds],
                                   sampling.temperature, sampling.top_p,
                                   [m for c in chunk for m in c.max_new_tokens])
            pos = 0
            for c in chunk:
                yield c.key, outs[pos:pos + len(c.prompts)]
                pos += len(c.prompts)
            chunk = []


def _worker(rank: int, spec: EngineConfig, devices: list[str] | None, tasks: mp.Queue, results: mp.Queue) -> None:
    # Devices must be chosen before torch / vLLM initialise CUDA (also set by the parent at spawn).
    if devices is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(devices)
    try:
        from nemo_r1.rollout import build_generator

        engine = build_generator(spec)
        results.put(("ready", rank, engine.max_model_len))
        while True:
            item = tasks.get()
            if item is None:
                break
            jobs, sampling, max_batch = item
            for key, outs in run_local(engine, jobs, sampling, max_batch):
                results.put(("job", rank, (key, outs)))
            results.put(("chunk", rank, None))
    except BaseException:  # report to the parent instead of dying silently
        results.put(("error", rank, traceback.format_exc()))


def _visible_devices() -> list[str]:
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env:
        return [d for d in env.split(",") if d.strip()]
    import torch

    return [str(i) for i in range(torch.cuda.device_count())]


class EnginePool:
    """`dp` engines built from `spec` (or one given engine); `run(jobs)` yields (key, completions)
    as jobs finish."""

    def __init__(self, spec: EngineConfig, dp: int = 1, engine: Any = None) -> None:
        self.spec, self.dp = spec, dp
        self._local: Any = None
        self._procs: list[mp.Process] = []
        if engine is not None or dp == 1:
            if engine is None:
                from nemo_r1.rollout import build_generator

                engine = build_generator(spec)
            self._local = engine
            self.max_model_len = self._local.max_model_len
            return
        import torch

        devices = None
        if torch.cuda.is_available():
            vis = _visible_devices()
            if len(vis) < dp * spec.tensor_parallel_size:
                raise ValueError(f"--dp {dp} x --tp {spec.tensor_parallel_size} needs {dp * spec.tensor_parallel_size} GPUs, {len(vis)} visible")
            devices = [vis[r * spec.tensor_parallel_size:(r + 1) * spec.tensor_parallel_size] for r in range(dp)]
        ctx = mp.get_context("spawn")
        self._tasks: mp.Queue = ctx.Queue()
        self._results: mp.Queue = ctx.Queue()
        saved = os.environ.get("CUDA_VISIBLE_DEVICES")
        try:
            for r in range(dp):
                if devices:  # the spawned child inherits this before anything imports torch there
                    os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(devices[r])
                p = ctx.Process(target=_worker, args=(r, spec, devices[r] if devices else None, self._tasks,
                                                      self._results), daemon=True)
                p.start()
                self._procs.append(p)
        finally:
            if saved is None:
                os.environ.pop("CUDA_VISIBLE_DEVICES", None)
            else:
                os.environ["CUDA_VISIBLE_DEVICES"] = saved
        self.max_model_len = min(self._get({"ready"})[1] for _ in range(dp))

    def _get(self, want: set[str]) -> tuple[str, Any]:
        while True:
            try:
                kind, rank, payload = self._results.get(timeout=5)
            except queue.Empty:
                dead = [p for p in self._procs if not p.is_alive()]
                if dead:
                    raise RuntimeError(f"generation worker died (exit code {dead[0].exitcode})") from None
                continue
            if kind == "error":
                self.close()
                raise RuntimeError(f"generation worker {rank} failed:\n{payload}")
            if kind in want:
                return kind, payload

    def run(self, jobs: list[Job], sampling: SamplingConfig,
            max_batch: int = 256) -> Iterator[tuple[Any, list[Completion]]]:
        if self._local is not None:
            yield from run_local(self._local, jobs, sampling, max_batch)
            return
        chunks: list[list[Job]] = []
        for job in jobs:
            if not chunks or sum(len(j.prompts) for j in chunks[-1]) >= max_batch:
                chunks.append([])
            chunks[-1].append(job)
        # Two chunks queued per worker, so no engine idles while the parent grades and writes.
        in_flight = 0
        while chunks or in_flight:
            while chunks and in_flight < 2 * self.dp:
                self._tasks.put((chunks.pop(0), sampling, max_batch))
                in_flight += 1
            kind, payload = self._get({"job", "chunk"})
            if kind == "chunk":
                in_flight -= 1
            else:
                yield payload

    def close(self) -> None:
        for _ in self._procs:
            self._tasks.put(None)
        for p in self._procs:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()
        self._procs = []
        self._local = None
