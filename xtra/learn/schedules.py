"""Step schedules of the training loop (spec A6.2, A7)."""

from __future__ import annotations

import math


def learning_rate(
    step: int,
    progress: float = 0.0,
    *,
    lr: float,
    warmup_steps: int,
    decay_steps: int,
    decay_rate: float,
    schedule: str = "step",
) -> float:
    """Linear warm-up from 0, then the decay of ``schedule`` (spec A7.7).

    ``lr * step / warmup`` for ``step < warmup``; then ``step``: ``lr * decay_rate **
    floor((step - warmup) / decay_steps)`` (0.2 until step 101000, then 0.02 with the paper's
    numbers); ``cosine``: half a cosine from ``lr`` at ``progress`` 0 to ``lr * decay_rate`` at 1,
    where ``progress`` in [0, 1] is the share of the run done (steps or time budget).
    """
    if step < warmup_steps:
        return lr * step / warmup_steps
    if schedule == "cosine":
        return lr * (decay_rate + (1 - decay_rate) * 0.5 * (1 + math.cos(math.pi * progress)))
    return lr * decay_rate ** ((step - warmup_steps) // decay_steps)
