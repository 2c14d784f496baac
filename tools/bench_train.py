"""Training throughput: Megatron (our stack) vs HF transformers, forward+backward, side by side.

Same model (default: the embedded SmolLM2-135M), same batch, same thread count, same loss
(mean next-token NLL). Iterations alternate between the two so that load from other processes
hits both alike; the report is the median tokens/s of each and their ratio (Megatron / HF).

    .venv/bin/python tools/bench_train.py --batch 4 --seq 256 --threads 2 --iters 6
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch: busy-waiting threads distort timings

import torch  # noqa: E402


def _batch(vocab: int, batch: int, seq: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, vocab, (batch, seq), generator=g)


def _hf_step(model: torch.nn.Module, tokens: torch.Tensor) -> float:
    t0 = time.perf_counter()
    logits = model(tokens).logits
    lp = torch.log_softmax(logits[:, :-1].float(), -1).gather(-1, tokens[:, 1:, None])[..., 0]
    (-lp.mean()).backward()
    model.zero_grad(set_to_none=True)
    return time.perf_counter() - t0


def _mcore_step(state, tokens: torch.Tensor, micro_batches: int) -> float:
    from nemo_r1.models import forward_backward_logprobs

    n = tokens[:, 1:].numel()
    mbs = [{"tokens": t} for t in tokens.chunk(micro_batches)]
    t0 = time.perf_counter()
    state.model.zero_grad_buffer()
    forward_backward_logprobs(state.model, mbs, lambda lp, mb: -lp.sum() / n)
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="embedded:smollm2", help="HF model dir (default: embedded SmolLM2-135M)")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--seq", type=int, default=256)
    p.add_argument("--micro-batches", type=int, default=1, help="Megatron micro-batches per step (HF: one batch)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--iters", type=int, default=6, help="timed iterations of each, alternating")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--json", help="also write the result here")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    from transformers import AutoModelForCausalLM

    from nemo_r1.distributed import destroy_distributed, init_distributed
    from nemo_r1.models import OptimSettings, load_pretrained, setup_training
    from nemo_r1.models.pretrained import resolve_hf_path

    hf_dir = resolve_hf_path(args.model)
    init_distributed(tp=1, pp=1)
    state = setup_training(load_pretrained(hf_dir), OptimSettings(lr=1e-6), total_steps=1)
    hf = AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float32)
    hf.train()
    tokens = _batch(hf.config.vocab_size, args.batch, args.seq)

    times: dict[str, list[float]] = {"megatron": [], "hf": []}
    for i in range(args.warmup + args.iters):
        tm = _mcore_step(state, tokens, args.micro_batches)
        th = _hf_step(hf, tokens)
        if i >= args.warmup:
            times["megatron"].append(tm)
            times["hf"].append(th)
    destroy_distributed()
    n_tok = args.batch * args.seq
    tps = {k: n_tok / statistics.median(v) for k, v in times.items()}
    result = {"model": str(hf_dir), "batch": args.batch, "seq": args.seq, "threads": args.threads,
              "micro_batches": args.micro_batches, "iters": args.iters,
              "megatron_tokens_per_s": round(tps["megatron"], 1), "hf_tokens_per_s": round(tps["hf"], 1),
              "ratio": round(tps["megatron"] / tps["hf"], 3),
              "megatron_step_s": [round(t, 3) for t in times["megatron"]], "hf_step_s": [round(t, 3) for t in times["hf"]]}
    print(f"forward+backward, {args.batch}x{args.seq} tokens, {args.threads} threads, median of {args.iters}:")
    print(f"  megatron  {result['megatron_tokens_per_s']:9.1f} tokens/s")
    print(f"  HF        {result['hf_tokens_per_s']:9.1f} tokens/s")
    print(f"  ratio     {result['ratio']:.3f}x (megatron / HF)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
