"""Step schedules of the training loop (spec A6.2, A7)."""

from __future__ import annotations


def learning_rate(
    step: int, *, lr: float, warmup_steps: int, decay_steps: int, decay_rate: float
) -> float:
    """Linear warm-up from 0, then step decay (spec A7 `adjust_lr`).

    ``lr * step / warmup`` for ``step < warmup``, else ``lr * decay_rate ** floor((step - warmup) / decay_steps)``:
    0.2 until step 101000, then 0.02 with the paper's numbers.
    """
    if step < warmup_steps:
        return lr * step / warmup_steps
    return lr * decay_rate ** ((step - warmup_steps) // decay_steps)
