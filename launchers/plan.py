"""`nemo-r1 plan`: per-GPU memory for each TP x PP x DP layout of a model on N nodes, and a pick.

Numbers come from the HF config.json (parameter counts per layer, heads, vocab), so the estimate
follows the real architecture instead of a "7B" label. Memory model (bytes per GPU):
- weights: bf16 params of the largest pipeline stage / TP;
- grads: fp32 main grads (Megatron accumulates in fp32 by default);
- optimizer: Adam fp32 master + two moments = 12 B/param, / DP with the distributed optimizer;
- activations: per transformer layer with flash attention (no s^2 scores), bf16, SwiGLU:
  s*b*(10h + 2(h_q + 2h_kv) + 6f) bytes (Megatron's fused SwiGLU keeps fc1's 2f-wide output and
  fc2's f-wide input), divided by TP with sequence parallelism (LayerNorm inputs
  stay replicated without it); 1F1B keeps PP micro-batches in flight on stage 0, so stage 0
  holds about all layers' worth; full recomputation keeps only each layer's 2sbh input
  (Korthikanti et al. 2022, adapted to GQA/SwiGLU); plus fp32 logits and their grad on the last stage;
- rollout (colocated vLLM at the training TP, one engine per TP group, asleep while training):
  its bf16 weights plus the KV cache for its share of the rollout sequences in flight at full
  length, 2 * layers * kv_heads * head_dim * 2 B per token / TP.
Training and generation do not peak together (vLLM sleeps while training; activations are freed
while generating), so the peak is the larger of the two phases.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

GIB = 1024**3


@dataclass(frozen=True)
class ModelShape:
    """What the estimate needs from an HF config.json."""

    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    ffn: int
    vocab: int
    tied: bool
    qkv_bias: bool = False
    experts: int = 0
    """MoE experts per layer (0 = dense); each has its own SwiGLU of `moe_ffn`."""
    moe_ffn: int = 0
    experts_per_token: int = 0

    @classmethod
    def from_hf(cls, cfg: dict[str, Any]) -> ModelShape:
        cfg = cfg.get("text_config", cfg)  # multimodal wrappers keep the LM under text_config
        try:
            hidden, layers, heads = cfg["hidden_size"], cfg["num_hidden_layers"], cfg["num_attention_heads"]
        except KeyError as e:
            raise ValueError(f"config.json lacks {e.args[0]!r}; is this a decoder-only LM config?") from None
        experts = int(cfg.get("num_local_experts") or cfg.get("num_experts") or cfg.get("n_routed_experts") or 0)
        return cls(hidden=hidden, layers=layers, heads=heads, kv_heads=cfg.get("num_key_value_heads") or heads,
                   head_dim=cfg.get("head_dim") or hidden // heads, ffn=cfg.get("intermediate_size") or 4 * hidden,
                   vocab=cfg["vocab_size"], tied=bool(cfg.get("tie_word_embeddings", False)),
                   qkv_bias=bool(cfg.get("attention_bias", cfg.get("model_type") == "qwen2")),
                   experts=experts, moe_ffn=int(cfg.get("moe_intermediate_size") or cfg.get("intermediate_size") or 0),
                   experts_per_token=int(cfg.get("num_experts_per_tok") or 0))

    @property
    def q_dim(self) -> int:
        return self.heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.kv_heads * self.head_dim

    def layer_params(self) -> int:
        h = self.hidden
        attn = h * self.q_dim + 2 * h * self.kv_dim + self.q_dim * h
        if self.qkv_bias:
            attn += self.q_dim + 2 * self.kv_dim
        mlp = 3 * h * self.moe_ffn * self.experts + h * self.experts if self.experts else 3 * h * self.ffn
        return attn + mlp + 2 * h  # two RMSNorm weights

    def embedding_params(self) -> int:
        return self.vocab * self.hidden * (1 if self.tied else 2)

    def total_params(self) -> int:
        return self.layers * self.layer_params() + self.embedding_params() + self.hidden  # + final norm


def load_hf_config(path: str | Path) -> dict[str, Any]:
    """config.json from a file or a checkpoint directory."""
    p = Path(path)
    if p.is_dir():
        p = p / "config.json"
    if not p.exists():
        raise FileNotFoundError(f"no HF config at {p}: pass --model-config with a config.json (or its dir)")
    return json.loads(p.read_text())


@dataclass
class LayoutEstimate:
    tp: int
    pp: int
    dp: int
    weights_gib: float
    grads_gib: float
    optimizer_gib: float
    activations_gib: float
    rollout_weights_gib: float
    kv_cache_gib: float
    train_peak_gib: float
    generate_peak_gib: float
    peak_gib: float
    fits: bool
    note: str = ""


@dataclass
class PlanReport:
    model_params: int
    world_size: int
    gpu_mem_gib: float
    layouts: list[LayoutEstimate]
    recommended: LayoutEstimate | None
    advice: list[str] = field(default_factory=list)

    def table(self) -> str:
        head = (f"{'TP':>3} {'PP':>3} {'DP':>4} | {'weights':>8} {'grads':>7} {'optim':>7} {'activ':>7} | "
                f"{'vLLM w':>7} {'KV':>7} | {'train':>7} {'gen':>7} {'fits':>5}")
        rows = [head, "-" * len(head)]
        for e in self.layouts:
            mark = " <- recommended" if e is self.recommended else (f"  ({e.note})" if e.note else "")
            rows.append(f"{e.tp:>3} {e.pp:>3} {e.dp:>4} | {e.weights_gib:8.1f} {e.grads_gib:7.1f} "
                        f"{e.optimizer_gib:7.1f} {e.activations_gib:7.1f} | {e.rollout_weights_gib:7.1f} "
                        f"{e.kv_cache_gib:7.1f} | {e.train_peak_gib:7.1f} {e.generate_peak_gib:7.1f} "
                        f"{'yes' if e.fits else 'no':>5}{mark}")
        return "\n".join(rows)

    def render(self) -> str:
        out = [f"model: {self.model_params / 1e9:.2f}B params; {self.world_size} GPUs x {self.gpu_mem_gib:.0f} GiB "
               "(per-GPU GiB below)", self.table()]
        out += self.advice
        return "\n".join(out)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def estimate(shape: ModelShape, tp: int, pp: int, dp: int, *, seq_len: int, micro_batch_size: int,
             rollout_seqs: int, rollout_len: int, recompute: bool, sequence_parallel: bool,
             distributed_optimizer: bool, gpu_mem_gib: float, headroom_gib: float) -> LayoutEstimate:
    """Per-GPU memory of one layout (the most loaded pipeline stage)."""
    layers_per_stage = shape.layers / pp
    emb = shape.vocab * shape.hidden
    # stage 0 holds the input embedding, the last stage the output layer (the same stage if PP=1)
    stage_params = layers_per_stage * shape.layer_params() + (emb * (1 if shape.tied or pp > 1 else 2))
    params = stage_params / tp
    weights = params * 2
    grads = params * 4
    optimizer = params * 12 / (dp if distributed_optimizer else 1)
    s, b, h, f = seq_len, micro_batch_size, shape.hidden, (shape.moe_ffn * max(shape.experts_per_token, 1)
                                                           if shape.experts else shape.ffn)
    ln_inputs = 4 * s * b * h  # the two LayerNorm inputs: split by TP only with sequence parallelism
    rest = s * b * (6 * h + 2 * (shape.q_dim + 2 * shape.kv_dim) + 6 * f)
    full_layer = (ln_inputs / tp if sequence_parallel else ln_inputs) + rest / tp
    if recompute:  # keep each layer's input; rebuild one layer at a time in the backward pass
        act = shape.layers * 2 * s * b * h / (tp if sequence_parallel else 1) + full_layer
    else:  # 1F1B: stage 0 keeps ~PP micro-batches of L/PP layers = L layers' worth
        act = shape.layers * full_layer
    logits = 2 * s * b * shape.vocab / tp * 4  # fp32 logits + their grad, last stage
    activations = act + logits
    rollout_w = shape.total_params() * 2 / tp if rollout_seqs else 0.0
    seqs_per_engine = rollout_seqs / (dp * pp) if rollout_seqs else 0  # one engine per TP group
    kv = seqs_per_engine * rollout_len * 2 * shape.layers * shape.kv_dim * 2 / tp
    train_peak = weights + grads + optimizer + activations
    gen_peak = weights + grads + optimizer + rollout_w + kv
    peak = max(train_peak, gen_peak)
    g = GIB
    return LayoutEstimate(tp=tp, pp=pp, dp=dp, weights_gib=weights / g, grads_gib=grads / g,
                          optimizer_gib=optimizer / g, activations_gib=activations / g,
                          rollout_weights_gib=rollout_w / g, kv_cache_gib=kv / g, train_peak_gib=train_peak / g,
                          generate_peak_gib=gen_peak / g, peak_gib=peak / g,
                          fits=peak / g <= gpu_mem_gib - headroom_gib)


def plan(hf_config: dict[str, Any] | str | Path, nodes: int, gpus_per_node: int = 8, *, gpu_mem_gib: float = 80.0,
         seq_len: int = 4096, micro_batch_size: int = 1, rollout_seqs: int = 0, rollout_len: int | None = None,
         recompute: bool = False, sequence_parallel: bool = True, distributed_optimizer: bool = True,
         headroom_gib: float = 6.0, max_tp: int | None = None) -> PlanReport:
    """Estimate every valid layout and recommend one.

    TP stays inside a node and must divide the attention and KV heads (Megatron's rule); PP must
    divide the layers. The pick is the fitting layout with the most data parallelism (fewest
    GPUs per model replica: least communication), preferring TP over PP at equal size (no
    pipeline bubble). `rollout_seqs` = sequences generated per step (prompts x generations) for
    GRPO; 0 for SFT. `headroom_gib` covers the CUDA context, NCCL buffers and fragmentation.
    """
    cfg = load_hf_config(hf_config) if isinstance(hf_config, (str, Path)) else hf_config
    shape = ModelShape.from_hf(cfg)
    world = nodes * gpus_per_node
    rollout_len = rollout_len or seq_len
    layouts = []
    for tp in _divisors(gpus_per_node):
        if (max_tp and tp > max_tp) or shape.heads % tp or shape.kv_heads % tp:
            continue
        for pp in _divisors(world // tp):
            if shape.layers % pp:
                continue
            dp = world // (tp * pp)
            layouts.append(estimate(shape, tp, pp, dp, seq_len=seq_len, micro_batch_size=micro_batch_size,
                                    rollout_seqs=rollout_seqs, rollout_len=rollout_len, recompute=recompute,
                                    sequence_parallel=sequence_parallel,
                                    distributed_optimizer=distributed_optimizer, gpu_mem_gib=gpu_mem_gib,
                                    headroom_gib=headroom_gib))
    layouts.sort(key=lambda e: (e.tp * e.pp, e.pp, e.tp))
    fitting = [e for e in layouts if e.fits]
    rec = fitting[0] if fitting else None
    advice = []
    if rec is not None:
        util = min(0.95, (rec.rollout_weights_gib + rec.kv_cache_gib + 2.0) / gpu_mem_gib)
        advice.append(f"recommended: parallel.tensor={rec.tp} parallel.pipeline={rec.pp} (data parallel {rec.dp}); "
                      f"peak {rec.peak_gib:.1f} of {gpu_mem_gib:.0f} GiB per GPU")
        if rollout_seqs:
            advice.append(f"rollout: KV cache for {rollout_seqs // (rec.dp * rec.pp)} sequences x {rollout_len} tokens per "
                          f"engine = {rec.kv_cache_gib:.1f} GiB; rollout.gpu_memory_utilization >= {util:.2f} "
                          "gives vLLM room for all of them at once (less queues them)")
    else:
        advice.append("no layout fits: " + ("add nodes, shorten sequences or lower micro_batch_size"
                                            if recompute else "try activation recomputation (--recompute), "
                                            "more nodes, or shorter sequences"))
    return PlanReport(model_params=shape.total_params(), world_size=world, gpu_mem_gib=gpu_mem_gib,
                      layouts=layouts, recommended=rec, advice=advice)


# ------------------------------------------------------------------ CLI


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="nemo-r1 plan", description="per-GPU memory estimate and layout advice")
    p.add_argument("--config", "-c", help="training YAML: model.path (its config.json), train.max_seq_len, "
                   "train.micro_batch_size and, for GRPO, grpo.prompts_per_step x grpo.num_generations")
    p.add_argument("--model-config", help="HF config.json or checkpoint dir (overrides the one under model.path)")
    p.add_argument("--nodes", type=int, default=1)
    p.add_argument("--gpus-per-node", type=int, default=8)
    p.add_argument("--gpu-mem-gib", type=float, default=80.0, help="80 for H100 80GB, 141 for H200")
    p.add_argument("--seq-len", type=int, default=None)
    p.add_argument("--micro-batch-size", type=int, default=None)
    p.add_argument("--rollout-seqs", type=int, default=None, help="sequences generated per step (GRPO)")
    p.add_argument("--recompute", action="store_true", help="full activation recomputation")
    p.add_argument("--no-sequence-parallel", action="store_true")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("overrides", nargs="*", help="dotted config overrides, as for sft/grpo")
    return p


def plan_main(args: argparse.Namespace | list[str]) -> int:
    """Handler of `nemo-r1 plan` (the top-level CLI passes a namespace whose `rest` is the raw argv)."""
    argv = list(args.rest) if isinstance(args, argparse.Namespace) else list(args)
    ns = build_parser().parse_args(argv)
    seq_len, mbs, rollout_seqs, model_cfg = 4096, 1, 0, ns.model_config
    sequence_parallel = not ns.no_sequence_parallel  # without a config: assumed on (the GPU recipes set it)
    if ns.config:
        from nemo_r1.config import load_config

        cfg = load_config(ns.config, ns.overrides)
        seq_len, mbs = cfg.train.max_seq_len, cfg.train.micro_batch_size
        sequence_parallel = cfg.parallel.sequence_parallel and not ns.no_sequence_parallel  # what training builds
        if cfg.data.format == "problem":  # GRPO data: prompts with checkable answers
            rollout_seqs = cfg.grpo.prompts_per_step * cfg.grpo.num_generations
        if model_cfg is None:
            if cfg.model.path.startswith("embedded:"):
                from nemo_r1.embedded import ensure_smollm2

                model_cfg = str(ensure_smollm2())
            else:
                model_cfg = cfg.model.path
    if model_cfg is None:
        raise SystemExit("nemo-r1 plan: give --config (with model.path) or --model-config")
    try:
        report = plan(model_cfg, ns.nodes, ns.gpus_per_node, gpu_mem_gib=ns.gpu_mem_gib,
                      seq_len=ns.seq_len or seq_len, micro_batch_size=ns.micro_batch_size or mbs,
                      rollout_seqs=rollout_seqs if ns.rollout_seqs is None else ns.rollout_seqs,
                      recompute=ns.recompute, sequence_parallel=sequence_parallel)
    except (FileNotFoundError, ValueError) as e:
        raise SystemExit(f"nemo-r1 plan: {e}") from None
    print(json.dumps(report.to_dict(), indent=1) if ns.json else report.render())
    return 0 if report.recommended is not None else 1
