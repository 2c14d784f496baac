"""Per-token logprobs through megatron's pipeline schedule, with a caller-supplied loss.

The trainers (GRPO, SFT) call one function, `forward_backward_logprobs`, on every rank with the
same micro-batches. The last pipeline stage turns its TP-sharded logits into logprobs of the next
tokens with a vocab-parallel log-softmax (megatron's vocab_parallel_cross_entropy: two all-reduces
of [b, s] statistics, never a full-vocab gather) and hands them to the loss function.

Loss semantics are "sum": gradients are d(sum over micro-batches and data-parallel ranks of the
losses)/dθ. Loss functions normalise by *global* counts themselves (see algorithms.grpo), so the
result does not depend on how a batch is cut into micro-batches or DP ranks.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

from nemo_r1.models.build import info_of

# loss_fn(logprobs [b, L-1] of tokens[:, 1:], micro_batch) -> loss or (loss, {name: float})
LossFn = Callable[[Tensor, Any], "Tensor | tuple[Tensor, dict[str, float]]"]


@dataclass
class StepOutput:
    """What a forward(+backward) over micro-batches produced, per micro-batch in order.

    On ranks outside the last pipeline stage these are empty unless `broadcast=True`.
    """

    logprobs: list[Tensor] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    metrics: list[dict[str, float]] = field(default_factory=list)

    @property
    def loss(self) -> float:
        return float(sum(self.losses))


def _field(mb: Any, name: str) -> Any:
    if isinstance(mb, dict):
        return mb.get(name)
    return getattr(mb, name, None)


def vocab_parallel_logprobs(logits: Tensor, target: Tensor, vocab_size: int, temperature: float = 1.0) -> Tensor:
    """log p(target) from TP-sharded logits [..., V/tp]; padded vocab rows (>= vocab_size) get p=0.

    Consumes `logits` (megatron's kernel works in place, saving a [b, s, V/tp] copy): callers
    that still need them pass a clone.
    """
    from megatron.core import parallel_state as ps
    from megatron.core.tensor_parallel import vocab_parallel_cross_entropy

    logits = logits.float()
    if temperature != 1.0:
        logits = logits / temperature
    part = logits.shape[-1]
    start = ps.get_tensor_model_parallel_rank() * part
    if start + part > vocab_size:  # this rank holds padding rows: exclude them from the softmax
        pad = torch.arange(start, start + part, device=logits.device) >= vocab_size
        logits = logits.masked_fill(pad, float("-inf"))
    return -vocab_parallel_cross_entropy(logits, target)


@dataclass
class LogprobLayout:
    """Where each output logprob comes from when a micro-batch's rows are packed, e.g. G completions
    sharing one prompt in one row (`nemo_r1.trainers.shared_prompt`).

    Output is [B, T] in the caller's own layout (zero where nothing maps). `src` positions predict
    their row's next token; `extra_src` positions predict `extra_target` instead (a shared prompt's
    last position predicts the first token of every completion but the first). Positions are
    absolute in the packed rows.
    """

    shape: tuple[int, int]
    dst: tuple[Tensor, Tensor]  # (b, t)
    src: tuple[Tensor, Tensor]  # (row, position)
    extra_dst: tuple[Tensor, Tensor]
    extra_src: tuple[Tensor, Tensor]
    extra_target: Tensor

    def logprobs(self, logits: Tensor, tokens: Tensor, start: int, vocab_size: int, temperature: float) -> Tensor:
        """logits [R, L - start, V/tp] of positions start.. of `tokens` [R, L] -> logprobs [B, T]."""
        er, ep = self.extra_src
        extra = logits[er, ep - start]  # a copy, taken before the in-place log-softmax below
        target = torch.cat([tokens[:, start + 1:], tokens[:, :1]], dim=1)
        lp = vocab_parallel_logprobs(logits, target, vocab_size, temperature)
        r, p = self.src
        out = lp.new_zeros(self.shape).index_put(self.dst, lp[r, p - start])
        if er.numel():
            out = out.index_put(self.extra_dst, vocab_parallel_logprobs(extra, self.extra_target, vocab_size,
                                                                        temperature))
        return out


def _head_input(module: torch.nn.Module, args: tuple) -> tuple:
    """Pre-hook on the output layer: project only positions >= logprob_start, batch-major.

    Training needs logprobs of completion tokens only; the prompt positions' [s, b, V/tp] logits
    (most of a GRPO sequence, and about a fifth of a small model's FLOPs) are never computed.
    The hidden states are also made batch-major ([b, s, h], a copy of h-wide rows) so the logits
    come out [b, s, V/tp] in memory: GPTModel's final `transpose(0, 1).contiguous()` is then free
    instead of a copy of the largest tensor in the step (0.2 GB for 4x256 tokens of SmolLM2).
    """
    start = getattr(module, "_nemo_r1_start", 0)
    x = args[0][start:] if start else args[0]
    return (x.transpose(0, 1).contiguous(), *args[1:])


def _head_output(module: torch.nn.Module, args: tuple, out: Any) -> Any:
    """Forward hook: hand GPTModel the [s, b, V/tp] view of the batch-major logits it expects."""
    logits, bias = out
    return logits.transpose(0, 1), bias


def _output_layer(model: torch.nn.Module) -> torch.nn.Module | None:
    """The last stage's output layer, hooked once; None elsewhere or with sequence parallelism
    (its hidden states are split along the sequence, so positions cannot be sliced there)."""
    from nemo_r1.models.build import unwrap

    head = getattr(unwrap(model), "output_layer", None)
    if head is None or getattr(head, "sequence_parallel", False):
        return None
    if not getattr(head, "_nemo_r1_hooked", False):
        head.register_forward_pre_hook(_head_input)
        head.register_forward_hook(_head_output)
        head._nemo_r1_hooked = True
    return head


def _rope_at_positions(module: torch.nn.Module, args: tuple, freqs: Tensor) -> Tensor | None:
    """Forward hook on GPTModel's rotary embedding: megatron computes RoPE for positions 0..s-1 of
    every row and ignores `position_ids` (it uses them only for learned absolute embeddings); rows
    with their own positions (packed documents, shared-prompt groups) get freqs [s, b, 1, d]."""
    pos = getattr(module, "_nemo_r1_positions", None)
    if pos is None:
        return None
    return freqs[:, 0, 0, :][pos.t()].unsqueeze(2)


def _rotary(model: torch.nn.Module) -> torch.nn.Module | None:
    from nemo_r1.models.build import unwrap

    rot = getattr(unwrap(model), "rotary_pos_emb", None)
    if rot is not None and not getattr(rot, "_nemo_r1_hooked", False):
        rot.register_forward_hook(_rope_at_positions)
        rot._nemo_r1_hooked = True
    return rot


def _forward_step(vocab_size: int, loss_fn: LossFn | None, temperature: float, data_iterator: Any,
                  model: torch.nn.Module):
    mb = next(data_iterator)
    tokens = _field(mb, "tokens")
    if tokens is None:
        raise TypeError("each micro-batch needs `tokens` ([b, L] int64), as an attribute or dict key")
    b, L = tokens.shape
    position_ids = _field(mb, "position_ids")
    rot = _rotary(model) if position_ids is not None else None
    if position_ids is None:
        position_ids = torch.arange(L, device=tokens.device).expand(b, L)
    start = int(_field(mb, "logprob_start") or 0)
    head = _output_layer(model)
    if head is not None:
        head._nemo_r1_start = start  # read by _head_input during this forward only
    if rot is not None:
        rot._nemo_r1_positions = position_ids  # read by _rope_at_positions during this forward only
    try:
        out = model(tokens, position_ids, _field(mb, "attention_mask"))
    finally:
        if head is not None:
            head._nemo_r1_start = 0
        if rot is not None:
            rot._nemo_r1_positions = None

    def loss_func(logits: Tensor):
        # Targets are the next tokens; the last position gets a dummy target and is dropped, which
        # avoids copying the [b, L, V/tp] logits to slice off one column. With logprob_start = s the
        # logits cover positions s.. only; the skipped positions get logprob 0 (callers mask them).
        s = start if head is not None else 0
        layout = _field(mb, "logprob_layout")
        if layout is not None:
            lp = layout.logprobs(logits, tokens, s, vocab_size, temperature)
        else:
            target = torch.cat([tokens[:, s + 1:], tokens[:, :1]], dim=1)
            lp = vocab_parallel_logprobs(logits, target, vocab_size, temperature)[:, :-1]
            if s:
                lp = torch.cat([lp.new_zeros(b, s), lp], dim=1)
        metrics: dict[str, float] = {}
        if loss_fn is None:
            loss = lp.sum() * 0.0
        else:
            res = loss_fn(lp, mb)
            loss, metrics = res if isinstance(res, tuple) else (res, {})
        stats = {"logprobs": lp.detach(), "loss": float(loss.detach()), "metrics": metrics}
        # 3-tuple + calculate_per_token_loss: the schedule neither divides by the micro-batch count
        # nor by tokens (our finalize ignores the count), so gradients are plain sums.
        return loss, torch.tensor(1, dtype=torch.int), stats

    return out, loss_func


def forward_backward_logprobs(model: torch.nn.Module, micro_batches: Sequence[Any], loss_fn: LossFn | None = None,
                              forward_only: bool = False, temperature: float = 1.0,
                              broadcast: bool = True) -> StepOutput:
    """Run every micro-batch through the pipeline; backward too unless `forward_only`.

    micro_batches: objects or dicts with `tokens` [b, L] (right padding is harmless: causal), and
    optionally `position_ids` [b, L] and `attention_mask` [b, 1, L, L] bool (True = masked, e.g.
    block-causal for packed documents), and `logprob_start` (int): logprobs of earlier positions are
    not computed and returned as 0 (GRPO: the prompt), and `logprob_layout` (a LogprobLayout: the
    logprobs handed to the loss are in its [B, T] layout instead of [b, L-1]). Gradients accumulate into the model's grad buffers; the
    caller zeroes them and steps the optimizer (see `nemo_r1.models.train.train_step`).
    broadcast: copy the last stage's logprobs/losses/metrics to every pipeline stage.
    """
    from megatron.core import parallel_state as ps
    from megatron.core.pipeline_parallel import get_forward_backward_func

    if not micro_batches:
        raise ValueError("forward_backward_logprobs needs at least one micro-batch")
    if not forward_only and loss_fn is None:
        raise ValueError("a backward pass needs a loss_fn")
    info = info_of(model)
    seq = max(int(_field(mb, "tokens").shape[1]) for mb in micro_batches)
    mbs = max(int(_field(mb, "tokens").shape[0]) for mb in micro_batches)
    fb = get_forward_backward_func()
    stats = fb(forward_step_func=partial(_forward_step, info.vocab_size, loss_fn, temperature),
               data_iterator=iter(micro_batches), model=[model], num_microbatches=len(micro_batches),
               seq_length=seq, micro_batch_size=mbs, forward_only=forward_only)
    out = StepOutput()
    if ps.is_pipeline_last_stage():
        out = StepOutput([s["logprobs"] for s in stats], [s["loss"] for s in stats], [s["metrics"] for s in stats])
    if broadcast and ps.get_pipeline_model_parallel_world_size() > 1:
        box = [out]
        dist.broadcast_object_list(box, src=ps.get_pipeline_model_parallel_last_rank(),
                                   group=ps.get_pipeline_model_parallel_group())
        out = box[0]
    return out


@torch.no_grad()
def forward_logits(model: torch.nn.Module, tokens: Tensor) -> Tensor | None:
    """Full-vocabulary logits [b, L, V] on the last stage (None elsewhere): gathers the TP shards,
    so use it for checks and debugging, not in training loops."""
    from megatron.core import parallel_state as ps
    from megatron.core.pipeline_parallel import get_forward_backward_func
    from megatron.core.tensor_parallel import gather_from_tensor_model_parallel_region

    info = info_of(model)
    b, L = tokens.shape

    def step(it: Any, m: torch.nn.Module):
        t = next(it)
        out = m(t, torch.arange(L).expand(b, L), None)
        return out, lambda logits: (logits.sum() * 0, torch.tensor(1, dtype=torch.int),
                                    gather_from_tensor_model_parallel_region(logits.float())[..., : info.vocab_size])

    res = get_forward_backward_func()(forward_step_func=step, data_iterator=iter([tokens]), model=[model],
                                      num_microbatches=1, seq_length=L, micro_batch_size=b, forward_only=True)
    return res[0] if ps.is_pipeline_last_stage() else None
