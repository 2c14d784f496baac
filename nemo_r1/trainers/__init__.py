"""Training loops (GRPO, SFT): they wire models, rollout, rewards and algorithms together."""
