"""The EfficientZero learner: targets, losses, the update step, self-play and the training loop."""
