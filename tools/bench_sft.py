"""SFT training tokens/s: `nemo-r1 sft` (Megatron, packed rows) vs TRL's SFTTrainer, side by side.

Same model (embedded SmolLM2-135M-Instruct), same documents (configs/sft/gsm8k_distill_cpu.yaml:
the first --rows GSM8K rows after decontamination, chat prompt + worked solution, loss on the
assistant turn only; TRL gets them as conversational prompt-completion rows), same max sequence
length, global batch, micro batch / gradient accumulation, fp32, AdamW, lr schedule, grad clip,
steps and thread count. TRL runs at its fastest CPU settings: packing=True, packing_strategy="bfd"
(which turns on padding-free: each micro-batch is flattened into one row with position_ids that
restart per document; with sdpa, transformers builds a block-diagonal causal mask from them),
gradient_checkpointing=False (TRL's default is True), its default fused AdamW.

Tokens/s = real (non-pad) tokens of the timed optimizer steps / their seconds, the first
--warmup steps excluded. Ours: run_sft's timing/step_s (collation of the micro-batches included).
TRL: on_step_begin -> on_step_end (batch fetch/collation and logging excluded; the end-to-end
time from one step end to the next is reported too). Each run is its own subprocess: run_sft
sets process-wide state (glibc mallopt that keeps freed memory, CPU patches, a gloo process group
that transformers warns about but ignores), and TRL should run as a user would run it.
--repeats alternates the two (first side swapped each repeat); the JSON lands in outputs/bench/.

    .venv/bin/python tools/bench_sft.py --rows 256 --seq 1024 --global-batch 4 --micro 2 --steps 4 --warmup 1

The defaults keep one run (both sides) near 10 minutes on 2 busy cores. Note the memory of TRL's
padding-free path: a micro-batch of 4 x 1024 tokens is one 4096-token row with a dense 4096^2 mask,
whose sdpa scores kept for backward took ~14 GB RSS (ours: [4, 1, 1024, 1024] per micro-batch).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs/sft/gsm8k_distill_cpu.yaml"


def load_cfg(args: argparse.Namespace, out: Path) -> Any:
    """The distillation recipe, cut to this benchmark's size; both sides read their settings from it."""
    from nemo_r1.config import load_config

    return load_config(str(CONFIG), [
        f"output_dir={out}", f"data.max_samples={args.rows}", f"train.max_seq_len={args.seq}",
        f"train.global_batch_size={args.global_batch}", f"train.micro_batch_size={args.micro}",
        f"train.max_steps={args.steps}", "parallel.tensor=1", "parallel.pipeline=1", "train.resume=none",
        "checkpoint.every=0", "checkpoint.save_final=false", "logging.tensorboard=false", "logging.plots=false"])


def run_ours(args: argparse.Namespace, out: Path) -> dict[str, Any]:
    """run_sft in this process; per-step seconds/tokens from its metric rows, epoch stats from its data."""
    from transformers import AutoTokenizer

    from nemo_r1.embedded import ensure_smollm2
    from nemo_r1.trainers.sft import run_sft
    from nemo_r1.trainers.sft_data import build_sft_data, load_documents

    cfg = load_cfg(args, out)
    tok = AutoTokenizer.from_pretrained(ensure_smollm2())
    data = build_sft_data(cfg, load_documents(cfg, tok), tok.pad_token_id or 0)
    bins = data.epochs.bins(0)
    epoch = {"documents": len(data.epochs.docs), "packed_rows": len(bins), "real_tokens": data.real_tokens(bins),
             "loss_tokens": data.loss_tokens(bins), "packing_efficiency": data.epochs.efficiency(bins)}
    rows = run_sft(cfg)
    return {"epoch": epoch, "step_s": [r["timing/step_s"] for r in rows],
            "tokens": [round(r["train/tokens_per_s"] * r["timing/step_s"]) for r in rows],
            "loss_tokens": [r["train/loss_tokens"] for r in rows], "loss": [r["train/loss"] for r in rows],
            "packing_efficiency": [r["train/packing_efficiency"] for r in rows]}


def trl_rows(cfg: Any) -> list[dict[str, Any]]:
    """The same rows load_examples(targets=True) turns into documents, as prompt-completion chats."""
    from nemo_r1.config import to_dict
    from nemo_r1.data.config import DataConfig
    from nemo_r1.data.decontam import decontaminate_rows
    from nemo_r1.data.formats import solution_target
    from nemo_r1.data.loading import load_rows
    from nemo_r1.data.templates import problem_messages

    d = DataConfig(**to_dict(cfg)["data"])
    rows = load_rows(d.train, d.format, d.columns, d.split, d.skip_bad_rows, d.max_samples)
    if d.decontaminate:
        rows = decontaminate_rows(rows, d.decontaminate)
    return [{"prompt": problem_messages(r["problem"], d.system_prompt, d.prompt_suffix, d.few_shot),
             "completion": [{"role": "assistant", "content": solution_target(r)}]} for r in rows.rows]


def run_trl(args: argparse.Namespace, out: Path) -> dict[str, Any]:  # noqa: C901 - one trainer, its probes
    """SFTTrainer with bfd packing; a callback times steps, training_step counts each micro-batch's tokens."""
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import SFTConfig, SFTTrainer

    from nemo_r1.embedded import ensure_smollm2

    cfg = load_cfg(args, out)
    path = ensure_smollm2()
    o = cfg.optim
    steps: dict[str, list[float]] = {"step_s": [], "end_to_end_s": [], "tokens": [], "loss_tokens": []}
    cur = {"tokens": 0, "loss_tokens": 0}
    probe: dict[str, Any] = {}

    class Timer(TrainerCallback):
        last = None

        def on_step_begin(self, *a, **k):  # noqa: ANN002, ANN003, ANN202
            self.t0 = time.perf_counter()
            Timer.last = Timer.last or self.t0

        def on_step_end(self, *a, **k):  # noqa: ANN002, ANN003, ANN202
            t = time.perf_counter()
            steps["step_s"].append(t - self.t0)
            steps["end_to_end_s"].append(t - Timer.last)
            Timer.last = t
            for k_ in cur:
                steps[k_].append(cur[k_])
                cur[k_] = 0

    class Counting(SFTTrainer):
        def training_step(self, model, inputs, *a, **k):  # noqa: ANN001, ANN002, ANN003, ANN202
            if "attention_mask" in inputs:
                cur["tokens"] += int(inputs["attention_mask"].sum())
            else:  # padding-free: one flattened row, no pad (pad_to_multiple_of=None)
                cur["tokens"] += int(inputs["position_ids"].numel())
            cur["loss_tokens"] += int((inputs["labels"][:, 1:] != -100).sum())
            probe.setdefault("batch_keys", sorted(inputs))
            probe.setdefault("input_ids_shape", list(inputs["input_ids"].shape))
            return super().training_step(model, inputs, *a, **k)

    def mask_hook(_mod, _a, kw):  # noqa: ANN001, ANN202 - what the first layer's attention gets
        if "mask" in probe:
            return
        m = kw.get("attention_mask")
        if m is None:
            probe["mask"] = "None (sdpa is_causal: one causal sequence, documents attend across boundaries)"
        else:
            n = m.shape[-1]
            allowed = int(m.sum()) if m.dtype == torch.bool else int((m == 0).sum())
            probe["mask"] = {"shape": list(m.shape), "dtype": str(m.dtype), "allowed": allowed,
                             "causal_allowed": n * (n + 1) // 2, "block_diagonal": allowed < n * (n + 1) // 2}

    sft = SFTConfig(
        output_dir=str(out), use_cpu=True, bf16=False, fp16=False, packing=True, packing_strategy="bfd",
        max_length=args.seq, per_device_train_batch_size=args.micro,
        gradient_accumulation_steps=args.global_batch // args.micro, max_steps=args.steps,
        learning_rate=o.lr, lr_scheduler_type="cosine_with_min_lr", lr_scheduler_kwargs={"min_lr": o.min_lr},
        warmup_steps=o.warmup_ratio, weight_decay=o.weight_decay, adam_beta1=o.adam_beta1, adam_beta2=o.adam_beta2,
        adam_epsilon=o.adam_eps, max_grad_norm=cfg.train.grad_clip, gradient_checkpointing=False,
        logging_steps=1, report_to="none", save_strategy="no", eval_strategy="no", seed=cfg.train.seed,
        dataloader_num_workers=0, disable_tqdm=False)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    model.model.layers[0].register_forward_pre_hook(mask_hook, with_kwargs=True)
    tok = AutoTokenizer.from_pretrained(path)
    ds = Dataset.from_list(trl_rows(cfg))
    trainer = Counting(model=model, args=sft, train_dataset=ds, processing_class=tok, callbacks=[Timer()])
    packed = trainer.train_dataset
    real = sum(len(x) for x in packed["input_ids"])
    cols = packed.column_names  # TRL 1.16 stores precomputed labels (-100 off the completion)
    loss = (sum(sum(x != -100 for x in lab) for lab in packed["labels"]) if "labels" in cols
            else sum(sum(m) for m in packed["completion_mask"]) if "completion_mask" in cols else None)
    epoch = {"documents": len(ds), "packed_rows": len(packed), "real_tokens": real, "loss_tokens": loss,
             "packing_efficiency": real / (len(packed) * args.seq), "columns": cols}
    trainer.train()
    hist = [h for h in trainer.state.log_history if "loss" in h]
    return {"epoch": epoch, **steps, "loss": [h["loss"] for h in hist], "probe": probe,
            "attn_implementation": model.config._attn_implementation, "optim": str(sft.optim),
            "padding_free": trainer.padding_free, "per_step_metrics": sorted(k for k in hist[-1] if k != "step")
            if hist else []}


def child(args: argparse.Namespace) -> None:
    """One side, in this (fresh) process; the result goes to --result."""
    import torch

    torch.set_num_threads(args.threads)
    out = Path(tempfile.mkdtemp(prefix=f"bench_sft_{args.side}_"))
    res = run_ours(args, out) if args.side == "ours" else run_trl(args, out)
    Path(args.result).write_text(json.dumps(res))


def rate(r: dict[str, Any], warmup: int) -> float:
    return sum(r["tokens"][warmup:]) / sum(r["step_s"][warmup:])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=256, help="first N rows of the GSM8K set (before decontamination)")
    ap.add_argument("--seq", type=int, default=1024, help="max sequence length (packed row length)")
    ap.add_argument("--global-batch", type=int, default=4, help="packed sequences per optimizer step")
    ap.add_argument("--micro", type=int, default=2, help="sequences per micro-batch (accumulation = global / micro)")
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--warmup", type=int, default=1, help="first steps of each run excluded")
    ap.add_argument("--repeats", type=int, default=1, help="alternate the two sides this many times")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--json", default=None, help="where to write the result (default outputs/bench/sft_<time>.json)")
    ap.add_argument("--side", choices=("ours", "trl"), help=argparse.SUPPRESS)
    ap.add_argument("--result", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if not 0 <= args.warmup < args.steps or args.global_batch % args.micro:
        ap.error("need 0 <= --warmup < --steps and --micro dividing --global-batch")
    if args.side:
        child(args)
        return
    tmp = Path(tempfile.mkdtemp(prefix="bench_sft_"))
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}  # the same for both (our launcher sets it too)
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in vars(args).items()
             if k in ("rows", "seq", "global_batch", "micro", "steps", "warmup", "threads")]
    runs: dict[str, list[dict[str, Any]]] = {"ours": [], "trl": []}
    for rep in range(args.repeats):
        for side in (("ours", "trl") if rep % 2 == 0 else ("trl", "ours")):
            result, log = tmp / f"{side}_{rep}.json", tmp / f"{side}_{rep}.log"
            t0 = time.perf_counter()
            with open(log, "w") as f:
                p = subprocess.run([sys.executable, __file__, *flags, f"--side={side}", f"--result={result}"],
                                   cwd=ROOT, env=env, stdout=f, stderr=subprocess.STDOUT)
            if p.returncode:
                sys.exit(f"bench sft: the {side} run failed (rc {p.returncode}); its log {log}:\n"
                         + "\n".join(log.read_text().splitlines()[-30:]))
            r = json.loads(result.read_text())
            r["wall_s"] = time.perf_counter() - t0
            runs[side].append(r)
            print(f"[bench sft] repeat {rep + 1}/{args.repeats} {side}: {rate(r, args.warmup):.1f} tokens/s "
                  f"(steps {[round(s, 2) for s in r['step_s']]}, wall {r['wall_s']:.0f}s)", flush=True)
    w = args.warmup
    ours_tps = [rate(r, w) for r in runs["ours"]]
    trl_tps = [rate(r, w) for r in runs["trl"]]
    ratios = [a / b for a, b in zip(ours_tps, trl_tps, strict=True)]
    t = runs["trl"][-1]

    def per_step(r: dict[str, Any]) -> dict[str, float]:
        return {"real_tokens": statistics.mean(r["tokens"][w:]), "loss_tokens": statistics.mean(r["loss_tokens"][w:])}

    res = {
        "settings": {k: v for k, v in vars(args).items() if k not in ("side", "result")},
        "config": str(CONFIG.relative_to(ROOT)), "isolation": "each run in its own subprocess (see docstring); "
        "in one process transformers only warns 'process group is initialized, but parallel_mode != DISTRIBUTED' "
        "and trains NOT_PARALLEL, but would inherit run_sft's mallopt (keep freed memory) and heap",
        "nemo_r1_tokens_per_s": ours_tps, "trl_tokens_per_s": trl_tps,
        "ratio_median": statistics.median(ratios), "ratios": ratios, "ratio_spread": [min(ratios), max(ratios)],
        "nemo_r1_epoch": runs["ours"][-1]["epoch"], "trl_epoch": t["epoch"],
        "nemo_r1_per_step_timed": per_step(runs["ours"][-1]), "trl_per_step_timed": per_step(t),
        "trl_end_to_end_tokens_per_s": [sum(r["tokens"][w:]) / sum(r["end_to_end_s"][w:]) for r in runs["trl"]],
        "trl_settings": {"packing": True, "packing_strategy": "bfd", "padding_free": t["padding_free"],
                         "attn_implementation": t["attn_implementation"], "attention_mask_seen": t["probe"].get("mask"),
                         "batch_keys": t["probe"].get("batch_keys"), "input_ids_shape": t["probe"].get("input_ids_shape"),
                         "optim": t["optim"], "gradient_checkpointing": False,
                         "per_step_metrics": t["per_step_metrics"],
                         "per_step_metrics_note": "compute_loss computes entropy and mean_token_accuracy from the "
                         "fused LM head per micro-batch (.item() each) and num_tokens; logged every step here"},
        "runs": runs,
    }
    path = Path(args.json) if args.json else ROOT / "outputs/bench" / f"sft_{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(res, indent=2))
    print(f"sft training tokens/s ({args.rows} rows, seq {args.seq}, global {args.global_batch}, micro {args.micro}, "
          f"{args.steps - w} timed steps, {args.threads} threads): nemo-r1 {statistics.median(ours_tps):.1f}, "
          f"TRL {statistics.median(trl_tps):.1f}; ratio {res['ratio_median']:.3f}x (median of {len(ratios)}, "
          f"{min(ratios):.3f}-{max(ratios):.3f}); packing efficiency nemo-r1 "
          f"{res['nemo_r1_epoch']['packing_efficiency']:.3f}, TRL {t['epoch']['packing_efficiency']:.3f}; {path}")


if __name__ == "__main__":
    main()
