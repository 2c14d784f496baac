"""Megatron models from HF configs, HF <-> Megatron conversion, logprob forward, checkpoints."""
