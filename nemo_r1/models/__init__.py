"""Megatron models from HF configs, HF <-> Megatron conversion, logprob forward, checkpoints.

What trainers and the rollout refit call (every function is a collective over the ranks that
hold the model unless it says otherwise):

- `load_pretrained(path)` -> GPTModel for this rank's TP/PP shard (HF dir or Megatron checkpoint)
- `setup_training(model, OptimSettings, total_steps)` -> TrainState (DDP, optimizer, LR schedule)
- `train_step(state, micro_batches, loss_fn)` / `forward_backward_logprobs(model, micro_batches,
  loss_fn, forward_only)` -> StepOutput with per-token logprobs
- `iter_hf_weights(model, bucket_bytes)` -> full HF-named tensors for the rollout engine
- `save_checkpoint` / `load_checkpoint` / `latest_checkpoint` / `checkpoint_dir`
- `convert_hf_to_mcore` / `convert_mcore_to_hf` (the `nemo-r1 convert` commands)
"""

from nemo_r1.models.build import build_model, info_of, unwrap
from nemo_r1.models.checkpoint import (
    checkpoint_dir,
    checkpoint_model_info,
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from nemo_r1.models.config import ModelInfo, model_info, padded_vocab, read_hf_config
from nemo_r1.models.convert import convert_hf_to_mcore, convert_mcore_to_hf
from nemo_r1.models.forward import (
    StepOutput,
    forward_backward_logprobs,
    forward_logits,
    vocab_parallel_logprobs,
)
from nemo_r1.models.hf_export import iter_hf_weights
from nemo_r1.models.hf_import import load_hf_weights
from nemo_r1.models.pretrained import load_pretrained
from nemo_r1.models.registry import ArchSpec, get_arch, register, supported
from nemo_r1.models.train import OptimSettings, TrainState, setup_training, train_step

__all__ = [
    "ArchSpec", "ModelInfo", "OptimSettings", "StepOutput", "TrainState", "build_model", "checkpoint_dir",
    "checkpoint_model_info", "convert_hf_to_mcore", "convert_mcore_to_hf", "forward_backward_logprobs",
    "forward_logits", "get_arch", "info_of", "iter_hf_weights", "latest_checkpoint", "load_checkpoint",
    "load_hf_weights", "load_pretrained", "model_info", "padded_vocab", "read_hf_config", "register",
    "save_checkpoint", "setup_training", "supported", "train_step", "unwrap", "vocab_parallel_logprobs",
]
