"""`evaluate()`: generate n samples per problem, grade, write samples and scores, resumably.

Flow per benchmark: load problems -> build the prompt text (data templates: problem + \\boxed
instruction, chat template) and token ids -> skip problems already in DIR/samples/<bench>.jsonl ->
generate the rest, one job per problem with one seed per sample (reruns reproduce) -> as each
problem finishes, grade it and append its n samples atomically -> score everything on disk ->
DIR/results.json and a markdown table.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from nemo_r1.eval.benchmarks import (
    Benchmark,
    DataError,
    Problem,
    code_user_message,
    data_benchmark,
    get_benchmark,
    load_problems,
)
from nemo_r1.eval.engines import as_engine, eval_engine_config
from nemo_r1.eval.grading import grade_code, grade_math
from nemo_r1.eval.scores import ProblemSamples, default_ks, summarize
from nemo_r1.rollout.base import EngineConfig, SamplingConfig
from nemo_r1.rollout.parallel import sample_seed
from nemo_r1.rollout.store import SampleStore, atomic_write_text

log = logging.getLogger(__name__)

DEFAULT_BENCHMARKS = ["math500", "aime24", "amc23", "gsm8k", "minerva", "olympiadbench"]


@dataclass
class EvalSettings:
    """What determines the samples; a rerun into the same DIR must match (else mixing runs)."""

    model: str
    n: int = 1
    temperature: float = 0.6
    top_p: float = 0.95
    max_new_tokens: int = 32768
    seed: int = 0
    system_prompt: str | None = None
    """None, `r1` (the R1-Zero system prompt) or any text (nemo_r1.data.templates)."""
    chat_template: str | None = None
    """None = the tokenizer's; a built-in name (chatml, chatml_think, r1_zero), a .jinja path, or
    `none` = raw text without any template (base models)."""
    backend: str = "vllm"
    benchmarks: list[str] = field(default_factory=list)

    def sample_key(self) -> dict[str, Any]:
        """Fields whose change makes old samples invalid (benchmarks and limit may grow)."""
        d = asdict(self)
        d.pop("benchmarks")
        return d


def build_prompt(tokenizer: Any, problem: Problem, bench: Benchmark, settings: EvalSettings) -> str:
    """The exact text sent to the model (stored with every sample): the data layer's messages
    (problem + the \\boxed instruction, as in GRPO training) rendered with the chat template."""
    from nemo_r1.data.templates import BOXED_SUFFIX, problem_messages, render_prompt

    if bench.kind == "code":
        msgs = problem_messages(code_user_message(problem.row), settings.system_prompt, suffix="")
    else:
        msgs = problem_messages(problem.problem, settings.system_prompt, suffix=BOXED_SUFFIX)
    if settings.chat_template == "none":
        return "\n\n".join(m["content"] for m in msgs) + "\n"
    return render_prompt(msgs, tokenizer, settings.chat_template)


def resolve_model(model: str, out_dir: Path) -> str:
    """An HF dir as is; a Megatron checkpoint (`checkpoints/step_N`, or a run's output dir: its
    latest checkpoint) is exported to OUT/hf_model/<step> once and reused on reruns."""
    p = Path(model)
    if (p / "config.json").exists() or not p.exists():
        return model  # HF dir, or a hub name on a connected cluster
    try:
        from nemo_r1.models.checkpoint import META_FILE, latest_checkpoint
        from nemo_r1.models.convert import convert_mcore_to_hf
    except ImportError as e:
        raise RuntimeError(f"--model {model} is not an HF dir, and Megatron checkpoints need nemo_r1.models, "
                           f"which is not importable: {e}") from None
    ckpt = p if (p / META_FILE).exists() else latest_checkpoint(p)
    if ckpt is None:
        raise DataError(f"--model {model}: neither an HF dir (config.json) nor a Megatron checkpoint "
                        f"({META_FILE}) nor a run dir with checkpoints/step_N")
    target = out_dir / "hf_model" / ckpt.name
    if (target / "config.json").exists():
        log.info("reusing the HF export of %s at %s", ckpt, target)
        return str(target)
    print(f"exporting Megatron checkpoint {ckpt} -> {target} (HF safetensors)")
    convert_mcore_to_hf(ckpt, target)  # writes atomically (temp dir, then rename)
    return str(target)


def _check_settings(out_dir: Path, settings: EvalSettings, overwrite: bool) -> None:
    """Refuse to mix samples of different settings; `overwrite` starts the dir afresh instead."""
    path = out_dir / "settings.json"
    if overwrite:
        import shutil

        shutil.rmtree(out_dir / "samples", ignore_errors=True)
        (out_dir / "results.json").unlink(missing_ok=True)
    elif path.exists():
        old = json.loads(path.read_text())
        new = settings.sample_key()
        diff = {k: (old.get(k), v) for k, v in new.items() if old.get(k) != v}
        if diff:
            raise DataError(f"{path}: this output dir holds samples made with other settings "
                            f"{ {k: f'{a} -> {b}' for k, (a, b) in diff.items()} }; use a new --out")
    atomic_write_text(path, json.dumps(settings.sample_key(), indent=2) + "\n")


def evaluate(
    model: str,
    benchmarks: list[str] | None = None,
    data: str | None = None,
    columns: dict[str, str] | None = None,
    n: int = 1,
    temperature: float = 0.6,
    top_p: float = 0.95,
    max_new_tokens: int = 32768,
    seed: int = 0,
    out_dir: str | Path = "outputs/eval",
    backend: str = "vllm",
    limit: int | None = None,
    dp: int = 1,
    tp: int | None = None,
    system_prompt: str | None = None,
    chat_template: str | None = None,
    max_batch: int = 256,
    max_model_len: int | None = None,
    hf_batch_size: int | None = None,
    kv_cache_gib: float | None = None,
    engine: Any = None,
    engine_config: EngineConfig | None = None,
    overwrite: bool = False,
    progress: bool = True,
    print_table: bool = True,
) -> dict[str, Any]:
    """Evaluate `model` on benchmarks (or a jsonl `data` file) and return the results dict.

    pass@1 averages n samples per problem; temperature 0 is greedy. Writes out_dir/results.json,
    out_dir/samples/<benchmark>.jsonl and out_dir/settings.json; a rerun resumes. `engine`: an
    engine to reuse instead of starting one: an eval engine, or a trainer's rollout `VLLMEngine` /
    `Generator` (then evaluation runs on the policy's current weights). `engine_config`: the
    `rollout` section to build engines from (default: eval's); tp, max_model_len, hf_batch_size
    and kv_cache_gib override it when given.
    """
    from tqdm.auto import tqdm
    from transformers import AutoTokenizer

    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if temperature < 0 or not 0 < top_p <= 1:
        raise ValueError(f"need temperature >= 0 and 0 < top_p <= 1, got {temperature}, {top_p}")
    if backend not in ("vllm", "hf"):
        raise ValueError(f"evaluate: backend {backend!r}; use 'vllm' or 'hf' (lighteval: nemo_r1.eval.lighteval_bridge)")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    benches = [data_benchmark(data, columns)] if data else [get_benchmark(b) for b in (benchmarks or DEFAULT_BENCHMARKS)]
    model_path = resolve_model(model, out)
    settings = EvalSettings(model=str(model), n=n, temperature=temperature, top_p=top_p,
                            max_new_tokens=max_new_tokens, seed=seed, system_prompt=system_prompt,
                            chat_template=chat_template, backend=backend, benchmarks=[b.name for b in benches])
    _check_settings(out, settings, overwrite)
    tok = AutoTokenizer.from_pretrained(model_path)

    # Prepare every benchmark first, so the engine only starts when there is work left.
    plans = []
    for b in benches:
        problems = load_problems(b, limit)
        store = SampleStore(out / "samples" / f"{b.name}.jsonl", n)
        if store.repaired:
            print(f"{b.name}: dropped {store.repaired} incomplete sample line(s) of an interrupted run")
        todo = [p for p in problems if p.id not in store.done]
        _check_prompts(tok, b, problems, store, settings)
        plans.append((b, problems, store, todo))
    total_todo = sum(len(t) for *_, t in plans)

    gen_time, gen_problems = 0.0, 0
    if total_todo:
        from nemo_r1.rollout.parallel import EnginePool

        given = dict(tensor_parallel_size=tp, max_model_len=max_model_len, hf_batch_size=hf_batch_size,
                     kv_cache_gib=kv_cache_gib)
        spec = replace(engine_config or eval_engine_config(model_path), model=model_path, backend=backend, seed=seed,
                       **{k: v for k, v in given.items() if v is not None})
        pool = EnginePool(spec, dp=dp, engine=as_engine(engine) if engine is not None else None)
        sampling = SamplingConfig(n=1, temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens)
        bar = tqdm(total=total_todo, unit="problem", desc="eval", disable=not progress, dynamic_ncols=True)
        try:
            for b, _, store, todo in plans:
                jobs, texts = _make_jobs(tok, b, todo, settings, pool.max_model_len)
                by_id = {p.id: p for p in todo}
                t0 = time.perf_counter()
                for pid, outs in pool.run(jobs, sampling, max_batch):
                    _write_problem(b, by_id[pid], texts[pid], outs, store)
                    gen_problems += 1
                    bar.update(1)
                gen_time += time.perf_counter() - t0
        finally:
            bar.close()
            pool.close()

    results: dict[str, Any] = {"settings": asdict(settings), "model_path": model_path, "benchmarks": {}}
    for b, problems, store, _ in plans:
        missing = [p.id for p in problems if p.id not in store.done]
        if missing:
            raise RuntimeError(f"{b.name}: {len(missing)} problems have no samples after generation")
        per = []
        for p in problems:
            recs = store.done[p.id]
            per.append(ProblemSamples(correct=[r["correct"] for r in recs], answers=[r["answer"] for r in recs],
                                      lengths=[r["length"] for r in recs]))
        results["benchmarks"][b.name] = summarize(per, default_ks(n))
    results["throughput"] = {"generated_problems": gen_problems, "generate_s": round(gen_time, 3),
                             "problems_per_s": gen_problems / gen_time if gen_time else None}
    atomic_write_text(out / "results.json", json.dumps(_finite(results), indent=2) + "\n")
    if print_table:
        print(markdown_table(results))
    return results


def _check_prompts(tok: Any, b: Benchmark, problems: list[Problem], store: SampleStore,
                   settings: EvalSettings) -> None:
    """Samples on disk must come from the prompt we would send now (template or code changes)."""
    for p in problems:
        if p.id in store.done:
            old = store.done[p.id][0].get("prompt")
            if old != build_prompt(tok, p, b, settings):
                raise DataError(f"{store.path}: problem {p.id!r} was sampled with a different prompt than "
                                "this run builds (template, system prompt or code changed); use a new --out")
            return


def _make_jobs(tok: Any, b: Benchmark, todo: list[Problem], settings: EvalSettings,
               ctx_len: int) -> tuple[list[Any], dict[str, str]]:
    """One generation job per problem: n copies of its token ids, one seed per sample."""
    from nemo_r1.rollout.parallel import Job

    jobs, texts = [], {}
    capped = 0
    for p in todo:
        text = build_prompt(tok, p, b, settings)
        ids = tok(text, add_special_tokens=False)["input_ids"]
        room = ctx_len - len(ids)
        if room < 1:
            raise DataError(f"{b.name} problem {p.id}: its prompt of {len(ids)} tokens does not fit the "
                            f"{ctx_len}-token context; raise --max-model-len or drop the problem")
        capped += room < settings.max_new_tokens
        texts[p.id] = text
        budget = min(settings.max_new_tokens, room)
        jobs.append(Job(key=p.id, prompts=[ids] * settings.n,
                        seeds=[sample_seed(settings.seed, b.name, p.id, j) for j in range(settings.n)],
                        max_new_tokens=[budget] * settings.n))
    if capped:
        print(f"note: {b.name}: {capped} problem(s) get fewer than {settings.max_new_tokens} new tokens "
              f"(prompt + completion must fit the {ctx_len}-token context)")
    return jobs, texts


def _write_problem(b: Benchmark, p: Problem, text: str, outs: list, store: SampleStore) -> None:
    """Grade one problem's samples (one reward call) and append them in one atomic write."""
    completions = [o.text for o in outs]
    if b.kind == "code":
        graded = grade_code(completions, [p.row] * len(outs))
    else:
        graded = grade_math(completions, [p.gold] * len(outs))
    store.append_problem([
        {"id": p.id, "sample": j, "prompt": text, "completion": o.text, "answer": g.answer, "gold": p.gold,
         "correct": g.correct, "length": len(o.token_ids), "finish_reason": o.finish_reason}
        for j, (o, g) in enumerate(zip(outs, graded, strict=True))
    ])


def _finite(x: Any) -> Any:
    """NaN (no scorable problem) -> null: results.json must stay strict JSON."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_finite(v) for v in x]
    return x


def markdown_table(results: dict[str, Any]) -> str:
    """One row per benchmark: pass@1 +- stderr, pass@k, maj@n, failures, length."""
    rows = results["benchmarks"]
    if not rows:
        return ""
    n = results["settings"]["n"]
    ks = [k for k in default_ks(n) if k > 1]
    head = ["benchmark", "problems", "n", "pass@1", *[f"pass@{k}" for k in ks], f"maj@{n}",
            "no answer", "unscorable", "mean len"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def pct(v: Any) -> str:
        return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:.1f}"

    for name, s in rows.items():
        cells = [name, str(s["problems"]), str(s["n"]), f"{pct(s['pass@1'])} ± {pct(s['stderr'])}",
                 *[pct(s.get(f"pass@{k}")) for k in ks], pct(s.get(f"maj@{n}")),
                 pct(s["extraction_failure_rate"]), str(s["unscorable"]), f"{s['mean_length']:.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
