"""Pure tensor functions of the RL and SFT objectives; they know nothing of ranks or models."""
